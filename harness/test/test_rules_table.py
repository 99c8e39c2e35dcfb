"""The rules table (vnetct.report.rules_table): each verdict path on the SUT
side and on the reference side, and properties over arbitrary runs."""

import pytest

from vnetct.report.rules_table import counts, rules_table, table_of

RULES = [{"id": "FO-NEG-01", "area": "failover", "sentence": "The primary stays hidden until the ack."},
         {"id": "LT-DATA-01", "area": "livetap", "sentence": "No frame is lost across the hand-off."},
         {"id": "TEAM-08", "area": "teaming", "sentence": "Bad input is refused with file and line."}]
SENTENCE = {rule["id"]: rule["sentence"] for rule in RULES}


def _case(case_id, outcome, rule_ids, subject=None, reason=None, **extra):
    case = {"id": case_id, "rules": [{"id": r, "sentence": SENTENCE.get(r, "s.")} for r in rule_ids],
            "outcome": outcome, "reason": reason, **extra}
    if subject is not None:
        case["subject"] = subject
    return case


def _by_id(table):
    return {entry["id"]: entry for entry in table}


def test_every_known_rule_is_listed_and_an_uncited_one_is_not_judged():
    table = rules_table(RULES, [])
    assert [entry["id"] for entry in table] == ["FO-NEG-01", "LT-DATA-01", "TEAM-08"]
    entry = table[0]
    assert (entry["area"], entry["sentence"]) == ("failover", RULES[0]["sentence"])
    assert entry["sut"] == {"verdict": "not-judged", "attribution": None, "cases": [],
                            "reasons": ["no case selected"]}
    assert entry["reference"] == {"verdict": "not-run", "cases": [], "reasons": ["no case selected"]}


def test_a_passing_sut_case_makes_the_rule_conform():
    entry = _by_id(rules_table(RULES, [_case("f/a", "passed", ["FO-NEG-01"])]))["FO-NEG-01"]
    assert entry["sut"] == {"verdict": "conforms", "attribution": None,
                            "cases": [{"id": "f/a", "outcome": "passed"}], "reasons": []}


def test_one_failed_sut_case_violates_the_rule_even_beside_passes():
    entry = _by_id(rules_table(RULES, [_case("f/a", "passed", ["FO-NEG-01"]),
                                       _case("f/b", "failed", ["FO-NEG-01"], reason="AssertionError: visible")]))
    sut = entry["FO-NEG-01"]["sut"]
    assert sut["verdict"] == "violated" and sut["attribution"] == "unattributed"
    assert sut["cases"][1] == {"id": "f/b", "outcome": "failed", "reason": "AssertionError: visible"}


def test_a_failure_violates_only_the_rules_it_names():
    """A case citing FO-NEG-01 and LT-DATA-01 failed naming FO-NEG-01: LT-DATA-01
    is not credited (the case stopped before judging it) and not violated."""
    failed = _case("f/b", "failed", ["FO-NEG-01", "LT-DATA-01"], reason="FO-NEG-01: visible",
                   violated_rules=["FO-NEG-01"])
    table = _by_id(rules_table(RULES, [failed]))
    assert table["FO-NEG-01"]["sut"]["verdict"] == "violated"
    assert table["FO-NEG-01"]["sut"]["attribution"] == "named"
    assert table["FO-NEG-01"]["sut"]["cases"][0]["violated_rules"] == ["FO-NEG-01"]
    assert table["LT-DATA-01"]["sut"]["verdict"] == "not-judged"
    assert table["LT-DATA-01"]["sut"]["reasons"] == ["case f/b stopped at a violation of FO-NEG-01"]


def test_a_failure_naming_no_rule_judges_none_even_beside_a_pass():
    table = _by_id(rules_table(RULES, [_case("f/a", "passed", ["FO-NEG-01"]),
                                       _case("f/b", "failed", ["FO-NEG-01"], reason="HostTimeout: no boot",
                                             violated_rules=[])]))
    sut = table["FO-NEG-01"]["sut"]
    assert sut["verdict"] == "not-judged" and sut["attribution"] is None
    assert sut["reasons"] == ["case f/b failed without naming a violated rule: HostTimeout: no boot"]


def test_an_expected_failure_still_violates_and_is_recorded_with_its_finding():
    finding = "QEMU 10.0: after device_del the standby still names the old primary"
    entry = _by_id(rules_table(RULES, [_case("f/r", "failed", ["FO-NEG-01"], reason="refused",
                                             violated_rules=["FO-NEG-01"], expected=True,
                                             expectation={"finding": finding})]))["FO-NEG-01"]
    assert entry["sut"]["verdict"] == "violated"
    assert entry["sut"]["cases"] == [{"id": "f/r", "outcome": "failed", "reason": "refused",
                                      "violated_rules": ["FO-NEG-01"], "expected": True, "finding": finding}]


def test_only_skips_and_errors_leave_the_rule_not_judged_with_their_reasons():
    entry = _by_id(rules_table(RULES, [
        _case("f/s", "skipped", ["FO-NEG-01"], reason="QEMU lacks backend-transfer"),
        _case("f/e", "error", ["FO-NEG-01"], reason="setup: guest did not boot in 60 s"),
        _case("f/s2", "skipped", ["FO-NEG-01"], reason="QEMU lacks backend-transfer")]))["FO-NEG-01"]
    assert entry["sut"]["verdict"] == "not-judged" and entry["sut"]["attribution"] is None
    assert entry["sut"]["reasons"] == ["case f/s: skipped: QEMU lacks backend-transfer",
                                       "case f/e: error: setup: guest did not boot in 60 s",
                                       "case f/s2: skipped: QEMU lacks backend-transfer"]


def test_the_reference_side_passes_fails_or_does_not_run():
    table = _by_id(rules_table(RULES, [
        _case("t/ok", "passed", ["TEAM-08"], subject="reference"),
        _case("t/bad", "failed", ["FO-NEG-01"], subject="reference", reason="checker said conformant"),
        _case("t/skip", "skipped", ["LT-DATA-01"], subject="reference", reason="no TAP")]))
    assert table["TEAM-08"]["reference"]["verdict"] == "passed"
    assert table["FO-NEG-01"]["reference"]["verdict"] == "failed"
    assert table["LT-DATA-01"]["reference"] == {"verdict": "not-run", "reasons": ["case t/skip: skipped: no TAP"],
                                                "cases": [{"id": "t/skip", "outcome": "skipped", "reason": "no TAP"}]}
    # A failing reference says nothing about the SUT.
    assert table["FO-NEG-01"]["sut"]["verdict"] == "not-judged"
    assert counts(table.values())["reference"] == {"passed": 1, "failed": 1, "not-run": 1}


def test_on_qemu_10_0_2_a_livetap_rule_is_not_judged_on_the_sut_but_passed_for_the_reference():
    """LT-DATA-01: the reference backend's hand-off passes; QEMU 10 lacks the
    live-TAP series, so the QEMU adapter's case skips."""
    skip = "QEMU lacks the live-TAP series: no migration parameter 'local' or 'backend-transfer'"
    entry = _by_id(rules_table(RULES, [
        _case("livetap/reference-backend/handoff-loses-nothing/10k-1q-64", "passed", ["LT-DATA-01"],
              subject="reference"),
        _case("livetap/qemu-adapter/series-handoff", "skipped", ["LT-DATA-01"], subject="sut", reason=skip)]))
    rule = entry["LT-DATA-01"]
    assert rule["sut"]["verdict"] == "not-judged"
    assert rule["sut"]["reasons"] == [f"case livetap/qemu-adapter/series-handoff: skipped: {skip}"]
    assert rule["reference"]["verdict"] == "passed"
    assert rule["reference"]["cases"] == [{"id": "livetap/reference-backend/handoff-loses-nothing/10k-1q-64",
                                           "outcome": "passed"}]


def test_a_case_without_subject_judges_the_sut_and_an_unknown_cited_rule_is_added():
    table = rules_table(RULES, [_case("old/case", "passed", ["FO-NEW-09"])])
    assert table[-1]["id"] == "FO-NEW-09" and table[-1]["area"] is None
    assert table[-1]["sut"]["verdict"] == "conforms" and table[-1]["reference"]["verdict"] == "not-run"


def test_a_results_file_without_a_table_gets_one_from_its_cases():
    results = {"cases": [_case("f/a", "failed", ["FO-NEG-01"])]}
    assert [entry["id"] for entry in table_of(results)] == ["FO-NEG-01"]
    assert table_of(results)[0]["sut"]["verdict"] == "violated"
    assert table_of({"rules": rules_table(RULES, []), "cases": []})[1]["id"] == "LT-DATA-01"


def test_the_run_summary_prints_the_sut_verdicts_and_the_reference_self_check_apart(capsys):
    from vnetct.cli.main import _summarise_rules

    cases = [_case("f/a", "failed", ["FO-NEG-01"], reason="visible", expected=True, expectation={"finding": "QEMU 10.0: x"}),
             _case("f/b", "passed", ["FO-NEG-01"]),
             _case("l/ref", "passed", ["LT-DATA-01"], subject="reference"),
             _case("l/sut", "skipped", ["LT-DATA-01"], reason="no series")]
    _summarise_rules({"sut": {"qemu_version": "10.0.2"}, "rules": rules_table(RULES, cases), "cases": cases})
    assert capsys.readouterr().out.splitlines() == [
        "vnetct: SUT (QEMU 10.0.2): 0 rules conform, 1 violated, 2 not judged",
        "  VIOLATED FO-NEG-01: f/a",
        "vnetct: reference self-check: 1 rules passed, 0 failed"]


# --- properties --------------------------------------------------------------------

try:
    import hypothesis
    from hypothesis import strategies
except ImportError:  # bootstrap's TEST_PACKAGES has python3-hypothesis; ./vnetct test installs it
    hypothesis = None


@pytest.mark.skipif(hypothesis is None, reason="python3-hypothesis is not installed (./vnetct test installs it)")
def test_verdicts_follow_the_failed_sut_cases():
    cases = strategies.lists(strategies.builds(
        lambda index, outcome, rule_ids, subject, finding, named: _case(
            f"c/{index}", outcome, rule_ids, subject=subject, reason=None if outcome == "passed" else "why",
            **({"expected": True, "expectation": {"finding": "f"}} if finding else {}),
            **({"violated_rules": rule_ids[:named]} if outcome in ("failed", "error") and named >= 0 else {})),
        strategies.integers(0, 10_000), strategies.sampled_from(["passed", "failed", "skipped", "error"]),
        strategies.lists(strategies.sampled_from(["FO-NEG-01", "LT-DATA-01", "TEAM-08", "FO-X-99"]), max_size=3),
        strategies.sampled_from([None, "sut", "reference"]), strategies.booleans(),
        strategies.integers(-1, 2)), max_size=25)

    @hypothesis.given(cases)
    @hypothesis.settings(max_examples=300, deadline=None, database=None)
    def check(cases):
        table = rules_table(RULES, cases)
        for entry in table:
            citing = [case for case in cases if (case.get("subject") or "sut") == "sut"
                      and entry["id"] in [rule["id"] for rule in case["rules"]]]
            sut_outcomes = [case["outcome"] for case in citing]
            # "violated" exactly when a failed case named the rule (or, before failures named
            # rules, a failed case cited it); never "conforms" beside a failure that names nothing.
            blamed = [case for case in citing if case["outcome"] in ("failed", "error") and (
                entry["id"] in case.get("violated_rules", []) or
                ("violated_rules" not in case and case["outcome"] == "failed"))]
            assert (entry["sut"]["verdict"] == "violated") == bool(blamed)
            unnamed = [case for case in citing if case.get("violated_rules") == []]
            assert entry["sut"]["verdict"] != "conforms" or (not unnamed and "passed" in sut_outcomes)
            assert len(entry["sut"]["cases"]) == len(sut_outcomes)
            assert entry["sut"]["verdict"] == "not-judged" or not entry["sut"]["reasons"]
        cited = {rule["id"] for case in cases for rule in case["rules"]}
        assert {entry["id"] for entry in table} == {rule["id"] for rule in RULES} | cited
        assert sum(counts(table)["sut"].values()) == len(table)

    check()


def test_an_exploration_judges_no_rule():
    # A QEMU without the live-TAP series: the series' own case skips, the adapter's
    # measurement of a shared TAP fd fails (an expected failure on QEMU 10.0); LT-DATA-01 is not judged.
    rules = [{"id": "LT-DATA-01", "area": "datapath", "sentence": "No frame is lost."}]
    cases = [{"id": "livetap/qemu-adapter/backend-transfer", "subject": "sut", "outcome": "skipped",
              "reason": "this QEMU lacks the live-TAP series", "rules": [{"id": "LT-DATA-01"}]},
             {"id": "livetap/qemu-adapter/local-migration-loss/same-tap-fd", "subject": "exploration",
              "outcome": "failed", "reason": "traffic stopped", "rules": [{"id": "LT-DATA-01"}]}]
    entry = rules_table(rules, cases)[0]
    assert entry["sut"]["verdict"] == "not-judged"
    assert entry["sut"]["reasons"] == ["case livetap/qemu-adapter/backend-transfer: skipped: this QEMU lacks the "
                                       "live-TAP series"]
    assert [case["id"] for case in entry["sut"]["cases"] + entry["reference"]["cases"]] == \
        ["livetap/qemu-adapter/backend-transfer"]
