"""The rules table of results.json: one verdict per rule on the system under
test, and apart from it the self-check of vnetct's own reference, from the
cases that cite the rule (reports/RESULTS.md: rules).

A pure function of (rules, cases): no I/O, no pytest, no native module, so the
results store, the summary and the report all compute the
same table the same way."""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional

SUBJECTS = ("sut", "reference", "exploration")
DEFAULT_SUBJECT = "sut"
# The subjects that give verdicts. An exploration measures the SUT outside the
# protocol a rule describes (e.g. local migration on a QEMU without the live-TAP
# series): its outcome and figures are reported, and it judges no rule.
JUDGED = ("sut", "reference")

# The SUT side: a rule conforms, is violated, or could not be judged.
CONFORMS, VIOLATED, NOT_JUDGED = "conforms", "violated", "not-judged"
# The reference side: vnetct's own reference passed or failed its self-check, or did not run.
PASSED, FAILED, NOT_RUN = "passed", "failed", "not-run"
# How a violation was attributed: the failed case named this rule (results.json
# `violated_rules`), or the case comes from a run before failures named their
# rules, when a failure counted against every rule the case cited.
NAMED, UNATTRIBUTED = "named", "unattributed"
NO_CASE_SELECTED = "no case selected"

_VERDICTS = {"sut": (CONFORMS, VIOLATED, NOT_JUDGED), "reference": (PASSED, FAILED, NOT_RUN)}


def subject_of(case: dict) -> str:
    """A case's subject; results written before subjects existed judged the SUT."""
    return case.get("subject") or DEFAULT_SUBJECT


def _evidence(case: dict) -> dict:
    entry = {"id": case.get("id", "?"), "outcome": case.get("outcome", "error")}
    if entry["outcome"] != "passed" and case.get("reason"):
        entry["reason"] = case["reason"]
    if entry["outcome"] != "passed" and isinstance(case.get("violated_rules"), list):
        entry["violated_rules"] = list(case["violated_rules"])
    if isinstance(case.get("expected"), bool):  # set once the run was compared with its expectations
        entry["expected"] = case["expected"]
    if isinstance(case.get("expectation"), dict) and case["expectation"].get("finding"):
        entry["finding"] = case["expectation"]["finding"]
    return entry


def _not_judged_reason(entry: dict) -> str:
    return f"case {entry['id']}: {entry['outcome']}: {entry.get('reason') or 'no reason given'}"


def _bearing(entry: dict, rule_id: str) -> str:
    """What one case says of one rule it cites: "good" (it passed), "named"
    (it failed naming this rule), "unattributed" (a failure from a run before
    failures named rules), "unnamed" (it failed naming no rule: a defect of the
    check, not a verdict), "elsewhere" (it stopped at another rule's violation,
    before judging this one) or "none" (skipped)."""
    outcome = entry["outcome"]
    if outcome == "passed":
        return "good"
    if outcome not in ("failed", "error"):
        return "none"
    if "violated_rules" not in entry:
        return UNATTRIBUTED if outcome == "failed" else "none"
    if rule_id in entry["violated_rules"]:
        return NAMED
    return "elsewhere" if entry["violated_rules"] else "unnamed"


def _side(subject: str, rule_id: str, cases: List[dict]) -> dict:
    good, bad, none = _VERDICTS[subject]
    evidence = [_evidence(case) for case in cases]
    bearings = [_bearing(entry, rule_id) for entry in evidence]
    reasons: List[str] = []
    if NAMED in bearings or UNATTRIBUTED in bearings:
        verdict = bad
    elif "unnamed" in bearings:
        verdict = none  # a failure that names no rule leaves the rule in doubt, even beside passes
        reasons = [f"case {entry['id']} failed without naming a violated rule: {entry.get('reason') or '?'}"
                   for entry, bearing in zip(evidence, bearings) if bearing == "unnamed"]
    elif "good" in bearings:
        verdict = good
    else:
        verdict = none
        for entry, bearing in zip(evidence, bearings):
            reason = (f"case {entry['id']} stopped at a violation of {', '.join(entry['violated_rules'])}"
                      if bearing == "elsewhere" else _not_judged_reason(entry))
            if reason not in reasons:
                reasons.append(reason)
        reasons = reasons or [NO_CASE_SELECTED]
    side: Dict[str, Any] = {"verdict": verdict}
    if subject == "sut":
        side["attribution"] = (UNATTRIBUTED if UNATTRIBUTED in bearings else NAMED) if verdict == VIOLATED else None
    side["cases"] = evidence
    side["reasons"] = reasons
    return side


def violating_cases(entry: dict, subject: str = "sut") -> List[str]:
    """The ids of the cases whose failure counts against the rule of a table
    entry on one side: they named it, or (older runs) failed naming nothing."""
    return [case.get("id", "?") for case in (entry.get(subject) or {}).get("cases") or []
            if _bearing({"outcome": "error", **case}, entry["id"]) in (NAMED, UNATTRIBUTED)]


def rules_table(rules: Iterable[dict], cases: Iterable[dict]) -> List[dict]:
    """One entry per rule: every rule of `rules` ({"id", "area", "sentence"},
    in their order), then any rule a case cites that `rules` lacks. Each entry
    judges the rule on the SUT from the SUT-subject cases citing it, and
    self-checks the reference from the reference-subject cases citing it."""
    entries: Dict[str, dict] = {}
    for rule in rules:
        entries.setdefault(rule["id"], {"id": rule["id"], "area": rule.get("area"),
                                        "sentence": rule.get("sentence", "")})
    citing: Dict[str, Dict[str, List[dict]]] = {}
    for case in cases:
        cited = {rule["id"]: rule for rule in case.get("rules") or []}  # a rule cited twice counts once
        for rule_id in case.get("violated_rules") or []:  # a failure may name a rule the case does not cite
            cited.setdefault(rule_id, {"id": rule_id})
        for rule in cited.values():
            entries.setdefault(rule["id"], {"id": rule["id"], "area": rule.get("area"),
                                            "sentence": rule.get("sentence", "")})
            by_subject = citing.setdefault(rule["id"], {subject: [] for subject in JUDGED})
            by_subject.setdefault(subject_of(case), []).append(case)
    table = []
    for rule_id, entry in entries.items():
        by_subject = citing.get(rule_id, {})
        table.append({**entry, **{subject: _side(subject, rule_id, by_subject.get(subject, []))
                                  for subject in JUDGED}})
    return table


def counts(table: Iterable[dict]) -> Dict[str, Dict[str, int]]:
    """How many rules have each verdict, per side. The reference's `not-run`
    counts only rules some selected reference case cites."""
    tally = {subject: {verdict: 0 for verdict in _VERDICTS[subject]} for subject in JUDGED}
    for entry in table:
        tally["sut"][entry["sut"]["verdict"]] += 1
        if entry["reference"]["cases"]:
            tally["reference"][entry["reference"]["verdict"]] += 1
    return tally


def table_of(results: dict, rules: Optional[Iterable[dict]] = None) -> List[dict]:
    """The table a results.json carries, or (older runs without one) the table
    computed from its cases, over the rules they cite."""
    table = results.get("rules")
    if isinstance(table, list) and all(isinstance(entry, dict) and "sut" in entry for entry in table):
        return table
    return rules_table(rules or [], results.get("cases") or [])
