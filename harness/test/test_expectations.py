"""Expectations per SUT release (vnetct.core.expectations) and the run's exit
rule built on them (vnetct.cli.main._summarise): from results.json files
written here, no QEMU needed. A new failure fails the run, an expected one
does not, a failure naming another rule is new, an unexpected pass fails only
under --strict, the reference's self-check and a seeded fault keep their
meaning, --update-expectations writes a file the next run accepts, and a bad
or stale file is an error naming the file, the entry and the field."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vnetct.cli import main as cli
from vnetct.core import expectations, paths
from vnetct.core.expectations import ExpectationsError

SUT = {"name": "QEMU", "version": "10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)", "fault": None}
RULES = [{"id": rule_id, "area": "failover", "sentence": f"{rule_id} holds."}
         for rule_id in ("FO-NEG-02", "FO-MIG-TGT-02", "FO-CFG-09", "FO-MIG-SRC-01")]
SUITE = ["failover/removal/replacement", "failover/hotplug/listed-first", "failover/migrate/plain",
         "failover/migrate/two-pairs", "teaming/xml/refuses-bad-input"]

FILE = """\
sut: QEMU
release: '10.0'
expectations:
- case: failover/removal/replacement
  outcome: failed
  violated_rules: [FO-NEG-02]
  finding: >-
    QEMU 10.0: after device_del of the primary the standby still names it.
  evidence:
    observed: device_add hostdev1 returned "Cannot attach more than one primary device".
    artifacts: [device-add-error.json]
    source: hw/net/virtio-net.c failover_hide_primary_device()
- case: failover/hotplug/listed-first
  outcome: failed
  violated_rules: [FO-MIG-TGT-02]
  finding: QEMU 10.0 never plugs a primary listed first back on the target.
  evidence:
    observed: the guest stays on its standby after the migration.
"""


def _case(case_id, outcome, violated=None, subject="sut", reason=None):
    case = {"id": case_id, "nodeid": f"cases/{case_id}.py::test_x", "rules": [RULES[0]], "subject": subject,
            "outcome": outcome, "reason": reason or (None if outcome == "passed" else f"why {case_id}"),
            "duration_s": 1.0, "started": "2026-12-03T07:00:00.000+00:00", "artifacts": {}, "metrics": {},
            "steps": []}
    if outcome in ("failed", "error"):
        case["violated_rules"] = list(violated or [])
    return case


def _as_expected():
    return [_case("failover/removal/replacement", "failed", ["FO-NEG-02"]),
            _case("failover/hotplug/listed-first", "failed", ["FO-MIG-TGT-02"]),
            _case("failover/migrate/plain", "passed"),
            _case("teaming/xml/refuses-bad-input", "passed", subject="reference")]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    folder = tmp_path / "expectations"
    folder.mkdir()
    (folder / "qemu-10.0.yaml").write_text(FILE)
    monkeypatch.setattr(expectations, "FOLDER", folder)
    return folder


def _run(tmp_path, cases, sut=None, collected=None, name="run"):
    run_dir = tmp_path / name
    run_dir.mkdir()
    results = {"schema": "vnetct-results/1", "run_id": name, "profile": "qemu", "command": "./vnetct run",
               "sut": sut or SUT, "started": "2026-12-03T07:00:00.000+00:00",
               "finished": "2026-12-03T07:04:00.000+00:00", "interrupted": False, "cases": cases,
               "run_problems": [], "collected": SUITE if collected is None else collected,
               "summary": {outcome: sum(1 for c in cases if c["outcome"] == outcome)
                           for outcome in ("passed", "failed", "skipped", "error")}, "rules": RULES}
    (run_dir / "results.json").write_text(json.dumps(results))
    return run_dir


def _summarise(run_dir, capsys, **flags):
    failed = any(case["outcome"] in ("failed", "error")
                 for case in json.loads((run_dir / "results.json").read_text())["cases"])
    status = cli._summarise(run_dir, 1 if failed else 0, 1.0, [], **flags)
    captured = capsys.readouterr()
    return status, captured.out + captured.err, json.loads((run_dir / "results.json").read_text())


# --- the exit rule ----------------------------------------------------------------------

def test_expected_failures_exit_0_and_are_recorded_per_case(tmp_path, folder, capsys):
    status, out, results = _summarise(_run(tmp_path, _as_expected()), capsys)
    assert status == 0, out
    assert "2 expected failures, 0 new failures, 0 unexpected passes" in out
    assert "expected: QEMU 10.0: after device_del of the primary the standby still names it." in out
    by_id = {case["id"]: case for case in results["cases"]}
    replacement = by_id["failover/removal/replacement"]
    assert replacement["expected"] is True and replacement["expectation"]["violated_rules"] == ["FO-NEG-02"]
    assert replacement["expectation"]["line"] == 4 and replacement["expectation"]["evidence"]["source"]
    assert by_id["failover/migrate/plain"]["expected"] is True and "expectation" not in by_id["failover/migrate/plain"]
    assert results["expectations"]["expected_failures"] == ["failover/removal/replacement",
                                                            "failover/hotplug/listed-first"]
    # The rule is still violated on the SUT (the deviation is real), its evidence says it was expected.
    fo_neg = next(entry for entry in results["rules"] if entry["id"] == "FO-NEG-02")
    assert fo_neg["sut"]["verdict"] == "violated" and fo_neg["sut"]["cases"][0]["expected"] is True


def test_a_new_failure_changes_the_exit_status(tmp_path, folder, capsys):
    cases = _as_expected() + [_case("failover/migrate/two-pairs", "failed", ["FO-MIG-SRC-01"])]
    status, out, results = _summarise(_run(tmp_path, cases), capsys)
    assert status == cli.EXIT_FAILED, out
    assert results["expectations"]["new_failures"] == ["failover/migrate/two-pairs"]
    assert re.search(r"NEW: a new failure: \S*qemu-10.0.yaml has no entry for it", out), out
    # The expected failures are listed apart from the new one.
    assert out.index("expected failures (known deviations of QEMU 10.0)") < out.index("new failures (these fail")


def test_an_expected_failure_naming_another_rule_is_unexpected(tmp_path, folder, capsys):
    cases = _as_expected()
    cases[0]["violated_rules"] = ["FO-CFG-09"]
    status, out, results = _summarise(_run(tmp_path, cases), capsys)
    assert status == cli.EXIT_FAILED, out
    case = results["cases"][0]
    assert case["expected"] is False and case["expectation"]["violated_rules"] == ["FO-NEG-02"]
    assert "expects failed naming FO-NEG-02, it failed naming FO-CFG-09" in case["unexpected"]


def test_an_error_where_a_failure_is_expected_is_unexpected(tmp_path, folder, capsys):
    cases = _as_expected()
    cases[1] = _case("failover/hotplug/listed-first", "error", ["FO-MIG-TGT-02"])
    assert _summarise(_run(tmp_path, cases), capsys)[0] == cli.EXIT_FAILED


def test_an_unexpected_pass_exits_0_and_1_under_strict(tmp_path, folder, capsys):
    cases = _as_expected()
    cases[0] = _case("failover/removal/replacement", "passed")
    status, out, results = _summarise(_run(tmp_path, cases, name="lenient"), capsys)
    assert status == 0, out
    assert "UNEXPECTED PASS failover/removal/replacement: passed, but" in out and "may be fixed" in out
    assert results["expectations"]["unexpected_passes"] == ["failover/removal/replacement"]
    assert results["cases"][0]["expected"] is False
    status, out, _ = _summarise(_run(tmp_path, cases, name="strict"), capsys, strict=True)
    assert status == cli.EXIT_FAILED and "[fails the run: --strict]" in out


def test_a_skip_where_a_failure_is_expected_is_not_checked_and_does_not_fail(tmp_path, folder, capsys):
    cases = _as_expected()
    cases[1] = _case("failover/hotplug/listed-first", "skipped", reason="no root ports")
    status, out, results = _summarise(_run(tmp_path, cases), capsys, strict=True)
    assert status == 0 and "NOT CHECKED failover/hotplug/listed-first" in out
    assert results["expectations"]["not_checked"] == ["failover/hotplug/listed-first"]


def test_a_failure_of_the_reference_self_check_still_fails_the_run(tmp_path, folder, capsys):
    cases = _as_expected()
    cases[3] = _case("teaming/xml/refuses-bad-input", "failed", ["FO-NEG-02"], subject="reference")
    status, out, results = _summarise(_run(tmp_path, cases), capsys)
    assert status == cli.EXIT_FAILED
    assert results["expectations"]["reference_failures"] == ["teaming/xml/refuses-bad-input"]
    assert "a failure of vnetct's own reference (self-check)" in out


def test_a_seeded_fault_expects_nothing_every_failure_counts(tmp_path, folder, capsys):
    status, out, results = _summarise(_run(tmp_path, _as_expected(), sut={**SUT, "fault": "forged-negotiated"}),
                                      capsys)
    assert status == cli.EXIT_FAILED, out
    assert results["expectations"]["applied"] is False and "--fault forged-negotiated" in out
    assert all(case["expected"] is False for case in results["cases"] if case["outcome"] == "failed")


def test_a_sut_without_a_release_expects_nothing(tmp_path, folder, capsys):
    reference = {"name": "vnetct reference failover model", "version": None}
    status, out, _ = _summarise(_run(tmp_path, _as_expected(), sut=reference), capsys)
    assert status == cli.EXIT_FAILED and "has no release version" in out


def test_a_release_without_a_file_expects_every_case_to_pass(tmp_path, folder, capsys):
    status, out, _ = _summarise(_run(tmp_path, _as_expected(), sut={**SUT, "version": "11.1.3"}), capsys)
    assert status == cli.EXIT_FAILED and "qemu-11.1.yaml: nothing is expected to fail" in out


def test_the_binarys_version_picks_the_major_minor_file():
    assert expectations.release_of(SUT) == ("QEMU", "10.0")
    assert expectations.release_of({"name": "QEMU", "version": "10.0.7"}) == ("QEMU", "10.0")
    assert expectations.release_of({"name": "QEMU", "version": "7.2.22 (Debian 1:7.2+dfsg-7+deb12u18)"}) == \
        ("QEMU", "7.2")
    assert expectations.release_of({"name": "vnetct reference failover model", "version": None}) is None
    assert expectations.file_name("QEMU", "11.1") == "qemu-11.1.yaml"


# --- --update-expectations --------------------------------------------------------------

def test_update_writes_a_file_that_the_next_run_accepts(tmp_path, folder, capsys):
    before = (folder / "qemu-10.0.yaml").read_text()
    cases = _as_expected()
    cases[1] = _case("failover/hotplug/listed-first", "passed")                     # fixed: dropped
    cases.append(_case("failover/migrate/two-pairs", "failed", ["FO-MIG-SRC-01"]))  # new: added
    status, out, results = _summarise(_run(tmp_path, cases, name="update"), capsys, update=True)
    assert status == 0, out
    assert "added failover/migrate/two-pairs: failed naming FO-MIG-SRC-01 (needs evidence)" in out
    assert "dropped failover/hotplug/listed-first: it passed on 10.0.2" in out
    written = expectations.load(folder / "qemu-10.0.yaml")
    assert list(written.entries) == ["failover/removal/replacement", "failover/migrate/two-pairs"]
    kept = written.entries["failover/removal/replacement"]
    assert kept.finding == "QEMU 10.0: after device_del of the primary the standby still names it."
    assert kept.evidence.source == "hw/net/virtio-net.c failover_hide_primary_device()"
    added = written.entries["failover/migrate/two-pairs"]
    assert added.needs_evidence and added.evidence.observed == "why failover/migrate/two-pairs"
    assert "NEEDS EVIDENCE in" in out and before != (folder / "qemu-10.0.yaml").read_text()
    # The next run with the same outcomes is as expected.
    status, out, _ = _summarise(_run(tmp_path, cases, name="next"), capsys, strict=True)
    assert status == 0, out
    assert "2 expected failures, 0 new failures, 0 unexpected passes" in out


def test_update_replaces_an_entry_that_fails_differently_and_keeps_the_old_text(tmp_path, folder, capsys):
    cases = _as_expected()
    cases[0]["violated_rules"] = ["FO-CFG-09"]
    status, out, _ = _summarise(_run(tmp_path, cases), capsys, update=True)
    assert status == 0 and "replaced failover/removal/replacement: expected failed naming FO-NEG-02" in out
    entry = expectations.load(folder / "qemu-10.0.yaml").entries["failover/removal/replacement"]
    assert entry.violated_rules == ("FO-CFG-09",) and entry.needs_evidence
    assert "the standby still names it" in entry.finding


def test_update_does_not_write_a_failure_that_names_no_rule(tmp_path, folder, capsys):
    cases = _as_expected() + [_case("failover/migrate/two-pairs", "failed", [])]
    status, out, _ = _summarise(_run(tmp_path, cases), capsys, update=True)
    assert status == cli.EXIT_FAILED, out
    assert "not written: failover/migrate/two-pairs failed naming no rule" in out
    assert "failover/migrate/two-pairs" not in expectations.load(folder / "qemu-10.0.yaml").entries


def test_update_drops_a_stale_entry_and_creates_a_missing_file(tmp_path, folder, capsys):
    suite = [case_id for case_id in SUITE if case_id != "failover/hotplug/listed-first"]
    cases = [case for case in _as_expected() if case["id"] != "failover/hotplug/listed-first"]
    status, out, _ = _summarise(_run(tmp_path, cases, collected=suite), capsys, update=True)
    assert status == 0 and "dropped failover/hotplug/listed-first: no such case in the suite" in out
    status, out, _ = _summarise(_run(tmp_path, _as_expected(), sut={**SUT, "version": "11.1.3"}, name="new"),
                                capsys, update=True)
    assert status == 0 and (folder / "qemu-11.1.yaml").exists()
    assert set(expectations.load(folder / "qemu-11.1.yaml").entries) == {"failover/removal/replacement",
                                                                         "failover/hotplug/listed-first"}


def test_update_refuses_a_run_with_a_seeded_fault(tmp_path, folder, capsys):
    status, out, _ = _summarise(_run(tmp_path, _as_expected(), sut={**SUT, "fault": "x"}), capsys, update=True)
    assert status == cli.EXIT_USAGE and "seeded a fault" in out


def test_the_cli_refuses_update_expectations_with_a_fault_or_repeat(tmp_path, capsys):
    out = str(tmp_path / "out")
    assert cli.main(["run", "--fault", "forged-negotiated", "--update-expectations", "--out", out]) == cli.EXIT_USAGE
    assert cli.main(["run", "--repeat", "2", "--update-expectations", "--out", out]) == cli.EXIT_USAGE


# --- bad and stale files ----------------------------------------------------------------

BAD = [
    ("sut: QEMU\nrelease: '10.0'\n", ":1:", "expectations: missing (required)"),
    ("sut: QEMU\nrelease: '10.0'\nexpectations: []\ncolour: red\n", ":4:", "colour: unknown key"),
    ("sut: QEMU\nrelease: 'ten'\nexpectations: []\n", ":2:", "release: expected a major.minor release"),
    ("sut: QEMU\nrelease: '10.1'\nexpectations: []\n", ":2:", "the file for QEMU 10.1 is named qemu-10.1.yaml"),
    ("sut: QEMU\nrelease: '10.0'\nexpectations: {}\n", ":3:", "expectations: expected a list of entries"),
    (FILE.replace("outcome: failed\n  violated_rules: [FO-NEG-02]", "outcome: broken\n  violated_rules: [FO-NEG-02]"),
     ":5:", "expectations[0] (case failover/removal/replacement).outcome: expected one of failed, error, skipped"),
    (FILE.replace("violated_rules: [FO-NEG-02]", "violated_rules: []"), ":6:",
     "expectations[0] (case failover/removal/replacement).violated_rules: expected the rule ids"),
    (FILE.replace("violated_rules: [FO-NEG-02]", "violated_rules: [fo-neg-2]"), ":6:",
     "violated_rules: expected a rule id like FO-NEG-02, got 'fo-neg-2'"),
    (FILE.replace("  finding: >-\n    QEMU 10.0: after device_del of the primary the standby still names it.\n", ""),
     ":4:", "expectations[0] (case failover/removal/replacement).finding: missing (required)"),
    (FILE.replace("observed: the guest stays", "seen: the guest stays"), ":18:",
     "expectations[1] (case failover/hotplug/listed-first).evidence.seen: unknown key"),
    (FILE.replace("case: failover/hotplug/listed-first", "case: failover/removal/replacement"), ":13:",
     "expectations[1].case: failover/removal/replacement has an entry already (line 4)"),
    (FILE.replace("outcome: failed\n  violated_rules: [FO-MIG-TGT-02]", "outcome: skipped\n  violated_rules: [X-1]"),
     ":15:", "expected [] for a skipped case"),
    ("sut: QEMU\nrelease: [10.0\n", ":3:", "not valid YAML"),
    ("", "qemu-10.0.yaml:", "empty; expected the keys sut, release and expectations"),
]


@pytest.mark.parametrize("text, line, message", BAD, ids=[f"bad-{index}" for index in range(len(BAD))])
def test_a_malformed_file_is_an_error_naming_the_file_line_entry_and_field(tmp_path, text, line, message):
    path = tmp_path / "qemu-10.0.yaml"
    path.write_text(text)
    with pytest.raises(ExpectationsError) as raised:
        expectations.load(path)
    error = str(raised.value)
    assert error.startswith(str(path)) and line in error and message in error, error


def test_a_malformed_file_stops_the_run_before_it_starts(tmp_path, folder, monkeypatch, capsys):
    (folder / "qemu-7.2.yaml").write_text("sut: QEMU\nrelease: '7.2'\nexpectations:\n- case: x\n")
    monkeypatch.setattr(cli.bootstrap, "prepare", lambda **kwargs: pytest.fail("set-up ran"))
    monkeypatch.setattr(cli, "_run_cases", lambda args, extra=None: pytest.fail("the cases ran"))
    assert cli.main(["run", "--out", str(tmp_path / "out")]) == cli.EXIT_USAGE
    assert "qemu-7.2.yaml:4: expectations[0] (case x).outcome: missing (required)" in capsys.readouterr().err


def test_a_stale_entry_is_an_error_after_the_run(tmp_path, folder, capsys):
    (folder / "qemu-10.0.yaml").write_text(FILE.replace("failover/hotplug/listed-first", "failover/hotplug/gone")
                                           .replace("[FO-NEG-02]", "[FO-NEW-99]"))
    status, out, results = _summarise(_run(tmp_path, _as_expected()), capsys)
    assert status == cli.EXIT_USAGE, out
    assert "qemu-10.0.yaml:13: expectations[1] (case failover/hotplug/gone).case: no such case in the suite" in out
    assert "qemu-10.0.yaml:4: expectations[0] (case failover/removal/replacement).violated_rules: unknown rule " \
           "id FO-NEW-99" in out
    assert len(results["expectations"]["problems"]) == 2


def test_the_repositorys_files_load_and_name_cases_of_the_suite():
    files = expectations.check_folder(paths.REPO / "expectations")
    assert "qemu-10.0.yaml" in [loaded.path.name for loaded in files]
    listing = subprocess.run([sys.executable, "-m", "pytest", str(paths.CASES), "-p", "vnetct.plugin",
                              "--collect-only", "--vnetct-list", "-p", "no:cacheprovider", "--import-mode=importlib",
                              "-o", "python_files=*.py", "--rootdir", str(paths.REPO)],
                             capture_output=True, text=True, cwd=paths.REPO, check=False)
    assert listing.returncode == 0, listing.stdout + listing.stderr
    suite = {line.split()[0] for line in listing.stdout.splitlines() if line and not line.startswith(" ")}
    rules = {rule_id for line in listing.stdout.splitlines() if line.startswith(" ")
             for rule_id in [line.split(":")[0].strip()]}
    for loaded in files:
        for entry in loaded.entries.values():
            assert entry.case in suite, f"{loaded.path.name}: {entry.case} is no case of the suite"
            assert set(entry.violated_rules) <= rules, f"{loaded.path.name}: {entry.case}: unknown rule"
            assert not entry.needs_evidence, f"{loaded.path.name}: {entry.case} still needs its evidence"


def test_the_plugin_records_every_collected_case_before_k(tmp_path):
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "demo.py").write_text('import pytest\n\n@pytest.mark.rule("FO-NEG-01")\ndef test_one():\n    pass\n\n'
                                   '@pytest.mark.rule("FO-NEG-02")\ndef test_two():\n    pass\n')
    run_dir = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "pytest", str(cases), "-p", "vnetct.plugin", "-q",
                             "-p", "no:cacheprovider", "--import-mode=importlib", "-o", "python_files=*.py",
                             "--rootdir", str(tmp_path), "--vnetct-profile=reference",
                             f"--vnetct-run-dir={run_dir}", "-k", "one"],
                            capture_output=True, text=True, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert [case["id"] for case in results["cases"]] == ["demo/one"]
    assert results["collected"] == ["demo/one", "demo/two"]
