"""Expectations per SUT release (expectations/<sut>-<major.minor>.yaml, format
in expectations/README.md): the known deviations of one release, each with the
case that shows it, the outcome and the rule ids it fails with, the finding's
text and the evidence. The binary's own version (results.json `sut.version`)
picks the file: qemu-10.0.yaml covers 10.0.2 and every 10.0.x.

A run's SUT cases are compared with it (`judge`): an outcome the file expects
does not fail the run, a new failure does (a failure naming other rules than
the file says is new too), a case that passes against its expectation is said
loudly (the deviation may be fixed) and fails the run only under --strict. The
reference's self-check (cases of subject "reference") has no expectations: a
failure there always fails the run. With a seeded fault (--fault) nothing is
expected: such a run fails by design, as before.

Loading is strict (vnetct.core.yaml_file): a bad file is an ExpectationsError
naming the file, the line, the entry and the field; so is an entry whose case
the suite does not have (a stale file) or whose rule the rule table lacks."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import yaml  # Debian: python3-yaml

from vnetct.core import paths, yaml_file
from vnetct.report.results import save
from vnetct.report.rules_table import rules_table, subject_of
from vnetct.core.atomic_file import write_atomically

FOLDER = paths.REPO / "expectations"
OUTCOMES = ("failed", "error", "skipped")
FAILURES = ("failed", "error")
RELEASE = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")
RULE_ID = re.compile(r"[A-Z][A-Z0-9]*(-[A-Z0-9]+)+")
CASE_ID = re.compile(r"[a-z0-9][A-Za-z0-9._/-]*")
# The text an entry written by --update-expectations starts with, until someone gives the evidence.
PLACEHOLDER = "NEEDS EVIDENCE"
OBSERVED_CHARS = 600


class ExpectationsError(Exception):
    """An expectations file that cannot be used; the message says where and why."""


@dataclass(frozen=True)
class Evidence:
    observed: str                       # what was seen, in the case's own words
    artifacts: Tuple[str, ...] = ()     # the case's files that show it
    source: Optional[str] = None        # where in the SUT's source, if known
    run: Optional[str] = None           # the run it was seen in

    def to_json(self) -> dict:
        data = {"observed": self.observed, "artifacts": list(self.artifacts), "source": self.source,
                "run": self.run}
        return {key: value for key, value in data.items() if value not in (None, [])}


@dataclass(frozen=True)
class Expectation:
    case: str
    outcome: str
    violated_rules: Tuple[str, ...]
    finding: str
    evidence: Evidence
    line: int = 0

    @property
    def needs_evidence(self) -> bool:
        return self.finding.startswith(PLACEHOLDER)

    def matches(self, case: dict) -> bool:
        """The case ended as expected: the same outcome and, for a failure,
        the same rules named (in any order)."""
        if case.get("outcome") != self.outcome:
            return False
        return self.outcome not in FAILURES or set(case.get("violated_rules") or []) == set(self.violated_rules)

    def describe(self) -> str:
        rules = f" naming {', '.join(self.violated_rules)}" if self.violated_rules else ""
        return f"{self.outcome}{rules}"

    def to_json(self) -> dict:
        return {"case": self.case, "outcome": self.outcome, "violated_rules": list(self.violated_rules),
                "finding": self.finding, "evidence": self.evidence.to_json()}


@dataclass
class ExpectationFile:
    path: Path
    sut: str
    release: str
    about: Optional[str] = None
    entries: Dict[str, Expectation] = field(default_factory=dict)  # by case id, in the file's order

    @property
    def label(self) -> str:
        return f"{self.sut} {self.release}"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def file_name(sut: str, release: str) -> str:
    return f"{_slug(sut)}-{release}.yaml"


def release_of(sut: dict) -> Optional[Tuple[str, str]]:
    """(SUT name, "major.minor") from results.json's `sut` ("QEMU",
    "10.0.2 (Debian 1:10.0.2+ds-2...)" -> ("QEMU", "10.0")); None for a SUT
    without a release (the reference model)."""
    name, version = sut.get("name"), sut.get("version")
    match = re.match(r"\s*v?([0-9]+)\.([0-9]+)", version) if isinstance(version, str) else None
    if not name or match is None:
        return None
    return name, f"{int(match[1])}.{int(match[2])}"


def shown(path: Path) -> str:
    """A path as the messages show it: relative to the repository if inside."""
    try:
        return str(Path(path).resolve().relative_to(paths.REPO))
    except ValueError:
        return str(path)


# --- reading ------------------------------------------------------------------------

ENTRY_KEYS = {"case": True, "outcome": True, "violated_rules": True, "finding": True, "evidence": True}
EVIDENCE_KEYS = {"observed": True, "artifacts": False, "source": False, "run": False}


def _case_of(node: yaml.Node) -> Optional[str]:
    """An entry's case id as written, to name the entry in errors about its other fields."""
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((value.value for key, value in node.value if isinstance(key, yaml.ScalarNode)
                 and key.value == "case" and isinstance(value, yaml.ScalarNode) and value.value), None)


def _entry(reader: yaml_file.Reader, node: yaml.Node, index: int) -> Expectation:
    named = _case_of(node)
    where = f"expectations[{index}]" + (f" (case {named})" if named else "")
    fields = reader.mapping(node, where, ENTRY_KEYS)
    case = reader.string(fields["case"], f"expectations[{index}].case", CASE_ID,
                         "a case id as ./vnetct list prints it")
    outcome_node = fields["outcome"]
    if not isinstance(outcome_node, yaml.ScalarNode) or outcome_node.value not in OUTCOMES:
        raise reader.error(outcome_node, f"{where}.outcome",
                           f"expected one of {', '.join(OUTCOMES)}, got {yaml_file.describe(outcome_node)}")
    outcome = outcome_node.value
    rules_node = fields["violated_rules"]
    rules = tuple(reader.string(rule, f"{where}.violated_rules", RULE_ID, "a rule id like FO-NEG-02")
                  for rule in reader.sequence(rules_node, f"{where}.violated_rules", "rule ids"))
    if len(set(rules)) != len(rules):
        raise reader.error(rules_node, f"{where}.violated_rules", f"a rule id given twice: {', '.join(rules)}")
    if outcome in FAILURES and not rules:
        raise reader.error(rules_node, f"{where}.violated_rules",
                           f"expected the rule ids the {outcome} case names (results.json violated_rules): "
                           f"an expectation cites the rule the deviation breaks; a failure naming no rule is "
                           f"a defect of the check, not of the SUT")
    if outcome == "skipped" and rules:
        raise reader.error(rules_node, f"{where}.violated_rules", "expected [] for a skipped case (it judges no rule)")
    finding = reader.text(fields["finding"], f"{where}.finding", "the finding: what deviates from the rule")
    evidence_fields = reader.mapping(fields["evidence"], f"{where}.evidence", EVIDENCE_KEYS)
    observed = reader.text(evidence_fields["observed"], f"{where}.evidence.observed", "what was observed")
    artifacts: Tuple[str, ...] = ()
    if "artifacts" in evidence_fields:
        key = f"{where}.evidence.artifacts"
        artifacts = tuple(reader.text(item, key, "an artifact's path")
                          for item in reader.sequence(evidence_fields["artifacts"], key, "artifact paths"))
    optional = {name: reader.text(evidence_fields[name], f"{where}.evidence.{name}", what)
                for name, what in (("source", "the SUT's source file, function or line"),
                                   ("run", "the run it was seen in")) if name in evidence_fields}
    return Expectation(case, outcome, rules, finding, Evidence(observed, artifacts, **optional),
                       node.start_mark.line + 1)


def load(path: Path) -> ExpectationFile:
    """Reads and validates one expectations file (ExpectationsError names the
    file, line, entry and field of the first problem)."""
    path = Path(path)
    reader = yaml_file.Reader(shown(path), ExpectationsError)
    root = yaml_file.compose(path, ExpectationsError)
    if root is None:
        raise reader.error(None, "", "empty; expected the keys sut, release and expectations "
                                     "(see expectations/README.md)")
    top = reader.mapping(root, "", {"sut": True, "release": True, "about": False, "expectations": True})
    sut = reader.text(top["sut"], "sut", "the SUT's name as results.json sut.name gives it (e.g. QEMU)")
    release = reader.string(top["release"], "release", RELEASE, "a major.minor release like '10.0'")
    if path.name != file_name(sut, release):
        raise reader.error(top["release"], "release", f"the file for {sut} {release} is named "
                                                      f"{file_name(sut, release)}, not {path.name}")
    about = reader.text(top["about"], "about", "what the file covers") if "about" in top else None
    loaded = ExpectationFile(path, sut, release, about)
    for index, node in enumerate(reader.sequence(top["expectations"], "expectations", "entries")):
        entry = _entry(reader, node, index)
        if entry.case in loaded.entries:
            raise reader.error(node, f"expectations[{index}].case", f"{entry.case} has an entry already "
                                                                    f"(line {loaded.entries[entry.case].line})")
        loaded.entries[entry.case] = entry
    return loaded


def check_folder(folder: Optional[Path] = None) -> List[ExpectationFile]:
    """Every file of the folder, loaded (the run checks them before it starts)."""
    folder = Path(folder or FOLDER)
    return [load(path) for path in sorted(folder.glob("*.yaml"))] if folder.is_dir() else []


def for_sut(sut: dict, folder: Optional[Path] = None) -> Tuple[Optional[Path], Optional[ExpectationFile]]:
    """The file for the SUT's release (its path even if absent) and its
    contents (None if there is no such file)."""
    release = release_of(sut)
    if release is None:
        return None, None
    path = Path(folder or FOLDER) / file_name(*release)
    return path, (load(path) if path.exists() else None)


def stale(expected: ExpectationFile, results: dict) -> List[str]:
    """Entries that cannot hold in this suite: a case id it does not have
    (results.json `collected`: every case id of the run's case files, before
    -k) or a rule id the rule table lacks."""
    problems = []
    collected = results.get("collected")
    known_rules = {entry.get("id") for entry in results.get("rules") or [] if isinstance(entry, dict)}
    for index, entry in enumerate(expected.entries.values()):
        where = f"{shown(expected.path)}:{entry.line}: expectations[{index}] (case {entry.case})"
        if isinstance(collected, list) and entry.case not in collected:
            problems.append(f"{where}.case: no such case in the suite (renamed or removed? ./vnetct list prints "
                            f"the case ids; ./vnetct run --update-expectations drops the entry)")
        unknown = [rule for rule in entry.violated_rules if known_rules and rule not in known_rules]
        if unknown:
            problems.append(f"{where}.violated_rules: unknown rule id {', '.join(unknown)} (./vnetct list "
                            f"prints the rules)")
    return problems


# --- judging a run ------------------------------------------------------------------

@dataclass
class Judgement:
    """A run's outcomes against its SUT's expectations (results.json
    `expectations`; each case gets `expected` and, if the file has an entry for
    it, `expectation`)."""
    applied: bool
    why: str                                   # which file, or why none applies
    file: Optional[ExpectationFile] = None
    expected_failures: List[dict] = field(default_factory=list)
    new_failures: List[dict] = field(default_factory=list)       # SUT failures the file does not expect
    unexpected_passes: List[dict] = field(default_factory=list)  # passed against an expected failure or skip
    not_checked: List[dict] = field(default_factory=list)        # a failure expected, the case skipped
    reference_failures: List[dict] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)            # stale entries

    def ok(self, strict: bool = False) -> bool:
        return not (self.new_failures or self.reference_failures or self.problems
                    or (strict and self.unexpected_passes))

    def to_json(self, strict: bool = False) -> dict:
        def ids(cases: List[dict]) -> List[str]:
            return [case["id"] for case in cases]

        return {"applied": self.applied, "why": self.why,
                "file": shown(self.file.path) if self.file else None,
                "release": self.file.label if self.file else None, "strict": strict,
                "expected_failures": ids(self.expected_failures), "new_failures": ids(self.new_failures),
                "unexpected_passes": ids(self.unexpected_passes), "not_checked": ids(self.not_checked),
                "reference_failures": ids(self.reference_failures), "problems": list(self.problems),
                "needs_evidence": [entry.case for entry in (self.file.entries.values() if self.file else [])
                                   if entry.needs_evidence]}


def _why_none(results: dict, path: Optional[Path]) -> Tuple[bool, str]:
    sut = results.get("sut") or {}
    if sut.get("fault"):
        return False, (f"a seeded fault (--fault {sut['fault']}): its cases are meant to fail, every failure "
                       f"counts and no expectation applies")
    if path is None:
        name = sut.get("name") or f"profile {results.get('profile', '?')}"
        return False, f"the SUT ({name}) has no release version: no expectations apply, every failure counts"
    return True, f"no {shown(path)}: nothing is expected to fail on this release"


def judge(results: dict, folder: Optional[Path] = None, expected: Optional[ExpectationFile] = None) -> Judgement:
    """Compares the run's cases with the expectations of the SUT it ran on
    (or with `expected`, a file given), and marks each case in `results`."""
    path, loaded = for_sut(results.get("sut") or {}, folder)
    applied, why = _why_none(results, path)
    if not applied:
        loaded = expected = None
    expected = expected or loaded
    if expected is not None:
        why = f"{shown(expected.path)} ({expected.label}) for {(results.get('sut') or {}).get('version')}"
    judgement = Judgement(applied, why, expected, problems=stale(expected, results) if expected else [])
    entries = expected.entries if expected else {}
    for case in results.get("cases") or []:
        entry = entries.get(case.get("id"))
        outcome = case.get("outcome")
        case.pop("unexpected", None)
        case.pop("expectation", None)
        if subject_of(case) == "reference":
            case["expected"] = outcome not in FAILURES
            if not case["expected"]:
                judgement.reference_failures.append(case)
                case["unexpected"] = "a failure of vnetct's own reference (self-check): no expectation excuses it"
            continue
        if entry is not None:
            case["expectation"] = {"file": shown(expected.path), "line": entry.line, **entry.to_json()}
        if entry is not None and entry.matches(case):
            case["expected"] = True
            if outcome in FAILURES:
                judgement.expected_failures.append(case)
        elif outcome in FAILURES:
            case["expected"] = False
            judgement.new_failures.append(case)
            named = ", ".join(case.get("violated_rules") or []) or "no rule"
            case["unexpected"] = (f"{shown(expected.path)} expects {entry.describe()}, it {outcome} naming {named}"
                                  if entry is not None else
                                  "no expectations apply (above)" if not applied else
                                  f"a new failure: {why}" if expected is None else
                                  f"a new failure: {shown(expected.path)} has no entry for it")
        elif outcome == "passed" and entry is not None:
            case["expected"] = False
            judgement.unexpected_passes.append(case)
            case["unexpected"] = (f"passed, but {shown(expected.path)} expects {entry.describe()}: the deviation "
                                  f"may be fixed (check, then ./vnetct run --update-expectations)")
        else:
            case["expected"] = True
            if entry is not None and outcome == "skipped":  # a failure was expected: not checked this time
                judgement.not_checked.append(case)
    return judgement


def shorten(text: object, limit: int = 400) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit] + " ... (results.json has it all)"


def summary_lines(judgement: Judgement, strict: bool = False) -> List[str]:
    """The terminal's account: the expected failures apart from the new ones,
    unexpected passes loudly, the reference's failures, stale entries."""
    counted = (f": {len(judgement.expected_failures)} expected failures, {len(judgement.new_failures)} new "
               f"failures, {len(judgement.unexpected_passes)} unexpected passes" if judgement.applied else "")
    lines = [f"vnetct: expectations: {judgement.why}{counted}"]
    if judgement.expected_failures:
        lines.append(f"  expected failures (known deviations of {judgement.file.label}):")
    for case in judgement.expected_failures:
        lines.append(f"  {case['outcome'].upper():8s} {case['id']}: {shorten(case.get('reason'))}")
        lines.append(f"           expected: {case['expectation']['finding']}")
    failures = judgement.new_failures + judgement.reference_failures
    if failures:
        lines.append(f"  {'new ' if judgement.applied else ''}failures (these fail the run):")
    for case in failures:
        lines.append(f"  {case['outcome'].upper():8s} {case['id']}: {shorten(case.get('reason'))}")
        lines.append(f"           NEW: {case['unexpected']}")
    for case in judgement.unexpected_passes:
        lines.append(f"  UNEXPECTED PASS {case['id']}: {case['unexpected']}"
                     + (" [fails the run: --strict]" if strict else ""))
    for case in judgement.not_checked:
        lines.append(f"  NOT CHECKED {case['id']}: expected {case['expectation']['outcome']}, skipped")
    evidence = judgement.to_json()["needs_evidence"]
    if evidence:
        lines.append(f"  NEEDS EVIDENCE in {shown(judgement.file.path)}: {', '.join(evidence)} (write the finding "
                     f"and what shows it)")
    lines += [f"  STALE    {problem}" for problem in judgement.problems]
    return lines


def settle(run_dir: Path, results: dict, update: bool = False, strict: bool = False,
           folder: Optional[Path] = None) -> Tuple[Judgement, List[str]]:
    """After a run: (with `update`) rewrites the SUT release's file from it,
    judges the run against the file, records the judgement in results.json
    (per case `expected` and `expectation`, the run's `expectations`, the
    rules table's evidence) and returns it with what the update changed."""
    said: List[str] = []
    expected = None
    if update:
        expected, changes = updated(results, folder)
        write(expected)
        said = [f"vnetct: --update-expectations wrote {shown(expected.path)} ({len(expected.entries)} entries)"
                + (":" if changes else ": nothing changed")] + [f"  {change}" for change in changes]
    judgement = judge(results, folder, expected)
    results["expectations"] = judgement.to_json(strict)
    results["rules"] = rules_table(results.get("rules") or [], results.get("cases") or [])
    save(run_dir, results)
    return judgement, said


# --- writing (./vnetct run --update-expectations) ------------------------------------------

HEADER = """\
# Expected outcomes of vnetct's cases on {label} (every {release}.x): the known
# deviations of this release, each with the rule it breaks and the evidence.
# Format: expectations/README.md. ./vnetct run --update-expectations rewrites
# this file from a run (comments are not kept: the prose goes into finding and
# evidence).
"""


def _new_entry(case: dict, results: dict, previous: Optional[Expectation]) -> Expectation:
    sut = results.get("sut") or {}
    finding = (f"{PLACEHOLDER}: recorded by ./vnetct run --update-expectations in run {results.get('run_id')}; "
               f"replace this with the finding: what deviates from the rule, and why it is {sut.get('name')}'s "
               f"doing, not the harness's")
    if previous is not None:
        finding += f" (the entry before expected {previous.describe()}: {previous.finding})"
    reason = str(case.get("reason") or "")
    observed = reason if len(reason) <= OBSERVED_CHARS else reason[:OBSERVED_CHARS] + " ..."
    failure = (case.get("artifacts") or {}).get("failure")
    return Expectation(case["id"], case["outcome"], tuple(case.get("violated_rules") or []), finding,
                       Evidence(observed or "(the case gave no reason)", (failure,) if failure else (),
                                run=f"{results.get('run_id')} ({sut.get('name')} {sut.get('version')})"))


def updated(results: dict, folder: Optional[Path] = None) -> Tuple[ExpectationFile, List[str]]:
    """The SUT release's file as this run says it should be, and what changed:
    entries that still hold are kept as written, entries whose case now passes
    or left the suite are dropped, new failures are added with a placeholder
    finding that asks for the evidence. Cases the run did not run (-k) or that
    skipped keep their entries."""
    sut = results.get("sut") or {}
    if sut.get("fault"):
        raise ExpectationsError(f"--update-expectations: the run seeded a fault (--fault {sut['fault']}): its "
                                f"failures are the fault's, not the release's")
    release = release_of(sut)
    if release is None:
        raise ExpectationsError(f"--update-expectations: the SUT ({sut.get('name') or results.get('profile')}) has "
                                f"no release version: there is no expectations file to write")
    path, existing = for_sut(sut, folder)
    new = ExpectationFile(path, *release, about=existing.about if existing else None)
    ran = {case["id"]: case for case in results.get("cases") or [] if subject_of(case) != "reference"}
    collected = results.get("collected")
    changes: List[str] = []
    for entry in (existing.entries.values() if existing else []):
        case = ran.get(entry.case)
        if isinstance(collected, list) and entry.case not in collected:
            changes.append(f"dropped {entry.case}: no such case in the suite")
        elif case is None or entry.matches(case):
            new.entries[entry.case] = entry
        elif case["outcome"] == "passed":
            changes.append(f"dropped {entry.case}: it passed on {sut.get('version')} (expected {entry.describe()})")
        elif case["outcome"] == "skipped":
            new.entries[entry.case] = entry
            changes.append(f"kept {entry.case}: not checked, the case skipped ({case.get('reason')})")
        elif not case.get("violated_rules"):
            changes.append(f"dropped {entry.case}: it {case['outcome']} naming no rule now (a defect of the check "
                           f"to fix, not an expectation); the entry expected {entry.describe()}")
        else:
            new.entries[entry.case] = _new_entry(case, results, entry)
            changes.append(f"replaced {entry.case}: expected {entry.describe()}, now "
                           f"{case['outcome']} naming {', '.join(case['violated_rules'])} (needs evidence)")
    for case_id, case in ran.items():
        if case["outcome"] not in FAILURES or case_id in new.entries:
            continue
        if not case.get("violated_rules"):
            changes.append(f"not written: {case_id} {case['outcome']} naming no rule (a defect of the check to fix, "
                           f"not an expectation)")
            continue
        new.entries[case_id] = _new_entry(case, results, None)
        changes.append(f"added {case_id}: {new.entries[case_id].describe()} (needs evidence)")
    return new, changes


def write(expected: ExpectationFile) -> Path:
    """Writes the file (atomically); load() reads back what this writes."""
    document = {"sut": expected.sut, "release": expected.release,
                **({"about": expected.about} if expected.about else {}),
                "expectations": [entry.to_json() for entry in expected.entries.values()]}
    text = HEADER.format(label=expected.label, release=expected.release) + yaml.safe_dump(
        document, sort_keys=False, allow_unicode=True, width=110, default_flow_style=False)
    expected.path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomically(expected.path, text)
