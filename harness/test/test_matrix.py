"""The release matrix (vnetct.report.matrix, `vnetct matrix`): from three
recorded runs, one per release, shaped like real results.json files (ids,
rules, metrics and SUT fields as a QEMU 10.0.2 run of the suite recorded them:
./vnetct run --no-setup -j 2, run 20261203-055031-7eb265), altered per
release: on 7.2 a case fails naming its rule (an unexpected failure) and the
igb case skips; on 10.0 and 11.1 a known deviation fails as expected; on 11.1
the downtime tripled. No QEMU, no suite is run: the running part of the
command runs a fake `vnetct run`."""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from headless_browser import chromium, console_lines, needs_chromium
from test_report import _Page
from vnetct.cli import main as cli
from vnetct.cli import matrix as matrix_cli
from vnetct.report import ResultsError
from vnetct.report.matrix import (ABSENT, NO_RESULTS, Column, load_column, matrix_view, moved_by, ordered,
                                  write_matrix)
from vnetct.report.rules_table import rules_table

RULES = {
    "FO-CFG-03": "A primary must be alone in its PCI slot (not multifunction, function 0); otherwise the guest "
                 "never gets it and the host reports an error.",
    "FO-MIG-SRC-01": "When a migration starts, the source emits UNPLUG_PRIMARY with the primary's device id for "
                     "every negotiated primary the guest holds and asks the guest to release it.",
    "FO-MIG-SRC-04": "A cancel during wait-unplug moves the migration to cancelling; it becomes cancelled only once "
                     "the guest has released every requested primary, and the source then plugs each of them back.",
    "FO-CFG-09": "A standby has at most one primary: a device whose failover_pair_id names a standby that already "
                 "has a primary is refused.",
    "FO-NEG-02": "When the guest acks VIRTIO_NET_F_STANDBY (bit 62) the host emits FAILOVER_NEGOTIATED with the "
                 "standby's device id and plugs the primary.",
}
IGB = "failover/config/igb-primary-is-multifunction"
ACPI = "failover/migrate/out-and-in/unplug-migrate-replug/acpi"
TWO_PAIRS = "failover/migrate/two-pairs/unplug-migrate-replug"
WAIT_UNPLUG = "failover/migrate/abort/wait-unplug"
REPLACEMENT = "failover/removal/replacement-primary-after-device-del"
VERSIONS = {"7.2": "7.2.22 (Debian 1:7.2+dfsg-7+deb12u16)", "10.0": "10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)",
            "11.1": "11.1.3 (Debian 1:11.1.3+ds-2~bpo13+1)"}
SUITES = {"7.2": "bookworm", "10.0": "bookworm-backports", "11.1": "trixie-backports"}
REFUSED = ("AssertionError: the host refused a new primary for net1 after its primary hostdev0 was deleted "
           "(DEVICE_DELETED seen): the command returned an error: device_add: GenericError: Cannot attach more "
           "than one primary device to 'net1': 'hostdev0' and 'hostdev1'.")


def _metric(value, unit):
    return {"value": value, "unit": unit}


def _case(case_id, rules, outcome="passed", **extra):
    case = {"id": case_id, "nodeid": f"cases/{case_id}.py::test_x", "subject": "sut",
            "rules": [{"id": rule, "sentence": RULES[rule]} for rule in rules], "outcome": outcome,
            "reason": None, "duration_s": 30.2, "started": "2026-12-03T05:51:41.627+00:00",
            "artifacts": {}, "metrics": {}, "steps": [], "lane": "lane-a"}
    case.update(extra)
    return case


def _expected_failure(release):
    return {"expected": True,
            "expectation": {"file": f"expectations/qemu-{release}.yaml", "line": 12, "case": REPLACEMENT,
                            "outcome": "failed", "violated_rules": ["FO-NEG-02"],
                            "finding": f"QEMU {release}: after device_del the standby still names the old primary",
                            "evidence": {"observed": REFUSED}}}


def release_results(release: str) -> dict:
    """One release's results.json, as `vnetct run --qemu-release RELEASE` writes it."""
    downtime = {"7.2": 58, "10.0": 61, "11.1": 190}[release]
    cases = [
        _case(IGB, ["FO-CFG-03"]),
        _case(ACPI, ["FO-MIG-SRC-01"], duration_s=88.4,
              metrics={"unplug_latency": _metric(0.114, "s"), "replug_carrying_latency": _metric(1.552, "s"),
                       "qemu_downtime": _metric(downtime, "ms"), "switchover_lost": _metric(47, ""),
                       "longest_loss_window": _metric(85.0, "ms")}),
        _case(TWO_PAIRS, ["FO-MIG-SRC-01"],
              metrics={"unplug_latency_hostdev0": _metric(0.09, "s"), "unplug_latency_hostdev1": _metric(0.045, "s"),
                       "qemu_downtime": _metric(62, "ms")}),
        _case(WAIT_UNPLUG, ["FO-MIG-SRC-04"]),
        _case(REPLACEMENT, ["FO-CFG-09", "FO-NEG-02"], "failed", reason=REFUSED, violated_rules=["FO-NEG-02"],
              **_expected_failure(release)),
    ]
    if release == "7.2":
        cases[0].update(outcome="skipped", reason="this QEMU (7.2.22) has no igb device model ('-device help' does "
                                                  "not list it; QEMU has it since 8.0)")
        cases[3].update(outcome="failed", violated_rules=["FO-MIG-SRC-04"], expected=False,
                        reason="AssertionError: FO-MIG-SRC-04: the source never plugged hostdev0 back after the "
                               "cancel (waited 10.0 s)", unexpected="a new failure: no expectation names it")
        cases[4] = _case(REPLACEMENT, ["FO-CFG-09", "FO-NEG-02"], expected=True)
    for case in cases:
        case.setdefault("expected", True)
    summary = {outcome: sum(1 for case in cases if case["outcome"] == outcome)
               for outcome in ("passed", "failed", "skipped", "error")}
    sut = {"profile": "qemu", "name": "QEMU", "version": VERSIONS[release], "qemu_version": VERSIONS[release],
           "qemu_binary": f"/var/cache/vnetct/qemu-{release}/qemu-system-x86_64",
           "qemu_release": {"release": release, "suites": [SUITES[release]],
                            "package_version": VERSIONS[release].split("(Debian ")[1].rstrip(")")},
           "accelerator": {"name": "tcg", "reason": "KVM boot failed", "cpu": "max"}, "machine": "q35",
           "guest_kernel": "6.12.117+deb12-amd64", "host_kernel": "6.18.44-fc-v1098",
           "nic_models": ["virtio-net-pci", "e1000e", "igb"]}
    return {"schema": "vnetct-results/1", "run_id": f"20261203-055031-{release}",
            "profile": "qemu", "command": f"./vnetct run --qemu-release {release}", "sut": sut,
            "lanes": ["lane-a"], "started": "2026-12-03T05:50:31.000+00:00",
            "finished": "2026-12-03T05:53:52.000+00:00", "interrupted": False, "cases": cases, "run_problems": [],
            "summary": {**summary, "total": len(cases)},
            "rules": rules_table([{"id": rule, "area": None, "sentence": text} for rule, text in RULES.items()],
                                 cases)}


def record(root: Path, release: str, results=None) -> Path:
    run_dir = root / release / "20261203-055031-7eb265"
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text(json.dumps(results or release_results(release), indent=2))
    (run_dir / "report.html").write_text("<!DOCTYPE html><title>the run's report</title>")
    return run_dir


@pytest.fixture
def recorded(tmp_path):
    """Three recorded runs, given out of version order."""
    return [(release, record(tmp_path / "runs", release)) for release in ("11.1", "7.2", "10.0")]


def _view(runs, output: Path):
    return matrix_view([load_column(label, run_dir) for label, run_dir in runs], output)


def _row(rows, key, value):
    return next(row for row in rows if row[key] == value)


# --- the view ------------------------------------------------------------------------------

def test_releases_are_ordered_by_the_qemu_version_the_runs_recorded(recorded, tmp_path):
    view = _view(recorded, tmp_path)
    assert [release["label"] for release in view["releases"]] == ["7.2", "10.0", "11.1"]
    assert [release["version"] for release in view["releases"]] == ["7.2.22", "10.0.2", "11.1.3"]
    # without a recorded version, the label's; without either, the given order, after the others
    columns = [Column("bookworm", None, {}), Column("10.0", None, {}), Column("sid", None, {}), Column("7.2", None, {})]
    assert [column.label for column in ordered(columns)] == ["7.2", "10.0", "bookworm", "sid"]


def test_rules_by_release_give_the_verdict_and_the_violating_cases(recorded, tmp_path):
    rules = _view(recorded, tmp_path)["rules"]
    assert [row["id"] for row in rules] == list(RULES)
    verdicts = {row["id"]: [cell["verdict"] for cell in row["cells"]] for row in rules}
    assert verdicts == {"FO-CFG-03": ["not-judged", "conforms", "conforms"],
                        "FO-MIG-SRC-01": ["conforms", "conforms", "conforms"],
                        "FO-MIG-SRC-04": ["violated", "conforms", "conforms"],
                        "FO-CFG-09": ["conforms", "not-judged", "not-judged"],
                        "FO-NEG-02": ["conforms", "violated", "violated"]}
    src04, neg02 = _row(rules, "id", "FO-MIG-SRC-04"), _row(rules, "id", "FO-NEG-02")
    assert src04["cells"][0]["violating"] == [WAIT_UNPLUG] and src04["cells"][0]["expected"] is False
    assert neg02["cells"][1]["violating"] == [REPLACEMENT] and neg02["cells"][1]["expected"] is True
    assert src04["changed"] and not _row(rules, "id", "FO-MIG-SRC-01")["changed"]
    assert "case failover/config/igb-primary-is-multifunction: skipped: this QEMU (7.2.22) has no igb" in \
        _row(rules, "id", "FO-CFG-03")["cells"][0]["reasons"][0]


def test_cases_by_release_give_outcome_expectation_and_named_rules(recorded, tmp_path):
    cases = _view(recorded, tmp_path)["cases"]
    wait_unplug, replacement, igb = (_row(cases, "id", case_id) for case_id in (WAIT_UNPLUG, REPLACEMENT, IGB))
    assert [cell["outcome"] for cell in wait_unplug["cells"]] == ["failed", "passed", "passed"]
    assert wait_unplug["cells"][0]["expected"] is False and wait_unplug["cells"][0]["violated_rules"] == ["FO-MIG-SRC-04"]
    assert wait_unplug["rules"] == ["FO-MIG-SRC-04"] and wait_unplug["changed"]
    assert [cell["outcome"] for cell in replacement["cells"]] == ["passed", "failed", "failed"]
    assert replacement["cells"][1]["expected"] is True
    assert replacement["cells"][1]["finding"] == "QEMU 10.0: after device_del the standby still names the old primary"
    assert [cell["outcome"] for cell in igb["cells"]] == ["skipped", "passed", "passed"]
    assert not _row(cases, "id", ACPI)["changed"]


def test_figures_side_by_side_with_medians(recorded, tmp_path):
    figures = _view(recorded, tmp_path)["figures"]
    two_pairs = next(row for row in figures if row["figure"] == "unplug_latency" and row["case"] == TWO_PAIRS)
    assert [cell["median"] for cell in two_pairs["cells"]] == [pytest.approx(0.0675)] * 3
    assert two_pairs["cells"][0]["count"] == 2 and not two_pairs["moved"]
    downtime = next(row for row in figures if row["figure"] == "downtime" and row["case"] == ACPI)
    assert [cell["median"] for cell in downtime["cells"]] == [58, 61, 190]
    assert downtime["cells"][2]["ratio"] == pytest.approx(190 / 61) and downtime["cells"][2]["moved"]
    assert not downtime["cells"][1]["moved"] and downtime["moved"]
    assert {row["figure"] for row in figures if row["case"] == ACPI} == {
        "unplug_latency", "replug_latency", "downtime", "switchover_loss", "longest_loss_window"}


def test_what_changed_between_neighbouring_releases(recorded, tmp_path):
    first, second = _view(recorded, tmp_path)["changes"]
    assert (first["from"], first["to"], second["from"], second["to"]) == ("7.2", "10.0", "10.0", "11.1")
    assert [(c["id"], c["from"], c["to"]) for c in first["rules"]] == [
        ("FO-CFG-03", "not-judged", "conforms"), ("FO-MIG-SRC-04", "violated", "conforms"),
        ("FO-CFG-09", "conforms", "not-judged"), ("FO-NEG-02", "conforms", "violated")]
    assert [(c["id"], c["from"]["outcome"], c["to"]["outcome"]) for c in first["cases"]] == [
        (IGB, "skipped", "passed"), (WAIT_UNPLUG, "failed", "passed"), (REPLACEMENT, "passed", "failed")]
    assert first["figures"] == []  # 58 -> 61 ms is no move
    assert second["rules"] == [] and second["cases"] == [] and first["rules_unselected"] == []
    assert [(c["case"], c["figure"], c["from"], c["to"]) for c in second["figures"]] == [(ACPI, "downtime", 61, 190)]


def test_a_figure_moves_past_the_factor_or_from_zero():
    assert moved_by(61, 190, 2.0) and moved_by(190, 61, 2.0) and not moved_by(61, 120, 2.0)
    assert moved_by(0.0, 0.5, 2.0) and not moved_by(0.0, 0.0, 2.0)
    assert not moved_by(61, 190, 4.0)


def test_cases_in_one_run_only_are_listed_apart_and_a_release_without_results_is_stepped_over(tmp_path):
    narrow = release_results("11.1")
    narrow["cases"] = [case for case in narrow["cases"] if case["id"] != IGB]
    narrow["rules"] = rules_table([{"id": rule, "sentence": text} for rule, text in RULES.items()], narrow["cases"])
    columns = [load_column("10.0", record(tmp_path, "10.0")), Column("10.1", None, None, "the run left no results.json"),
               load_column("11.1", record(tmp_path, "11.1", narrow))]
    view = matrix_view(columns, tmp_path)
    assert view["releases"][1]["state"] == NO_RESULTS
    igb = _row(view["cases"], "id", IGB)["cells"]
    assert [cell["outcome"] for cell in igb] == ["passed", NO_RESULTS, ABSENT]
    assert igb[2] == {"outcome": ABSENT, "expected": None, "violated_rules": [], "finding": None, "reason": None,
                      "duration_s": None}
    (step,) = view["changes"]
    assert (step["from"], step["to"], step["skipped"]) == ("10.0", "11.1", ["10.1"])
    assert step["only_before"] == [IGB] and step["only_after"] == [] and step["cases"] == []
    # FO-CFG-03 lost its only case with IGB: not judged for want of a selected case, which is no change
    assert step["rules"] == [] and step["rules_unselected"] == ["FO-CFG-03"]


def test_write_matrix_writes_html_and_the_same_view_as_json(recorded, tmp_path):
    output = tmp_path / "matrix"
    html_path = write_matrix(recorded, output)
    view = json.loads((output / "matrix.json").read_text())
    assert view["schema"] == "vnetct-matrix/1" and view["factor"] == 2.0
    assert view["releases"][0]["report_href"] == "../runs/7.2/20261203-055031-7eb265/report.html"
    page = _Page(html_path.read_text())
    assert not [attrs for attrs in page.all("link") + page.all("script") if attrs.get("src") or attrs.get("href")]
    rules_rows = [attrs["id"] for attrs in page.all("tr", "rule")]
    assert rules_rows == [f"rule-{rule}" for rule in RULES]
    assert [attrs["id"] for attrs in page.all("tr", "changed") if attrs.get("id", "").startswith("rule-")] == [
        "rule-FO-CFG-03", "rule-FO-MIG-SRC-04", "rule-FO-CFG-09", "rule-FO-NEG-02"]
    text = "".join(page.text)
    assert "7.2 → 10.0" in text and "10.0 → 11.1" in text and "61 → 190 ms" in text


# --- malformed input ------------------------------------------------------------------------

@pytest.mark.parametrize("alter, field", [
    (lambda r: r["cases"][1].update(outcome="maybe"), "cases[1].outcome"),
    (lambda r: r["cases"][2].pop("id"), "cases[2].id"),
    (lambda r: r["cases"][0].update(expected="yes"), "cases[0].expected"),
    (lambda r: r["cases"][1].update(metrics=[1, 2]), "cases[1].metrics"),
    (lambda r: r.pop("cases"), "cases"),
    (lambda r: r["rules"][3]["sut"].update(verdict="fine"), "rules[3].sut.verdict"),
    (lambda r: r.update(sut="QEMU"), "sut"),
])
def test_a_malformed_results_file_names_the_file_and_the_field(tmp_path, alter, field):
    results = release_results("10.0")
    alter(results)
    run_dir = record(tmp_path, "10.0", results)
    with pytest.raises(ResultsError) as raised:
        write_matrix([("10.0", run_dir)], tmp_path / "out")
    assert str(raised.value).startswith(f"{run_dir / 'results.json'}: field '{field}': ")


def test_a_missing_or_unreadable_results_file_names_the_file(tmp_path):
    with pytest.raises(ResultsError, match=f"{tmp_path / 'nowhere' / 'results.json'}: no such file"):
        write_matrix([("7.2", tmp_path / "nowhere")], tmp_path / "out")
    run_dir = record(tmp_path, "7.2")
    (run_dir / "results.json").write_text('{"cases": [')
    with pytest.raises(ResultsError, match=f"{run_dir / 'results.json'}: not valid JSON"):
        write_matrix([("7.2", run_dir)], tmp_path / "out")


# --- the command ----------------------------------------------------------------------------

def test_vnetct_matrix_from_recorded_runs(recorded, tmp_path, capsys):
    argv = ["matrix", "--out", str(tmp_path / "out")]
    for label, run_dir in recorded:
        argv += ["--from", f"{label}={run_dir}"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "vnetct matrix: 7.2 -> 10.0: 4 rules changed verdict, 3 cases changed outcome" in printed
    assert "  RULE   FO-MIG-SRC-04: violated -> conforms" in printed
    assert f"  FIGURE Downtime, {ACPI}: 61 -> 190 ms" in printed
    (written,) = (tmp_path / "out").glob("matrix-*/matrix.html")
    assert (written.parent / "matrix.json").is_file()


@pytest.mark.parametrize("argv, said", [
    (["--from", "7.2"], "--from 7.2: expected LABEL=DIR"),
    (["--from", "7.2=a", "--from", "7.2=b"], "release '7.2' is given twice"),
    (["--from", "7.2=a", "--releases", "7.2"], "--from renders recorded runs: it takes no --releases"),
    (["--releases", "7.2,,11.1"], "--releases 7.2,,11.1: an empty release name"),
    (["--releases", "7.2,7.2"], "a release is named twice"),
    (["--factor", "1"], "--factor 1.0: must be more than 1"),
    (["-j", "0"], "--jobs 0: must be at least 1"),
])
def test_usage_errors(tmp_path, capsys, argv, said):
    assert cli.main(["matrix", "--out", str(tmp_path), *argv]) == 2
    assert said in capsys.readouterr().err
    assert not list(tmp_path.glob("matrix-*")), "a usage error runs and writes nothing"


def test_a_malformed_recorded_run_is_a_usage_error_naming_file_and_field(tmp_path, capsys):
    results = release_results("7.2")
    results["cases"][0]["outcome"] = "green"
    run_dir = record(tmp_path, "7.2", results)
    assert cli.main(["matrix", "--out", str(tmp_path), "--from", f"7.2={run_dir}"]) == 2
    assert f"{run_dir / 'results.json'}: field 'cases[0].outcome': 'green' is not one of" in capsys.readouterr().err


def test_each_release_runs_vnetct_run_with_its_qemu_release():
    args = SimpleNamespace(no_setup=False, jobs=2, keyword="failover/migrate")
    first = matrix_cli.run_command("7.2", Path("/o/7.2"), args, first=True)
    assert first[1:] == ["run", "--qemu-release", "7.2", "--out", "/o/7.2", "-j", "2", "-k", "failover/migrate"]
    assert first[0].endswith("/vnetct")
    assert "--no-setup" in matrix_cli.run_command("11.1", Path("/o/11.1"), args, first=False)
    assert "--no-setup" in matrix_cli.run_command("7.2", Path("/o/7.2"), SimpleNamespace(
        no_setup=True, jobs=None, keyword=None), first=True)


FAKE_RUN = """\
import json, os, sys
from pathlib import Path
template, out, status = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
print("fake vnetct run:", template.name)
if template.exists():
    run_dir = out / "20261203-060000-abcdef"
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text(template.read_text())
    os.symlink(run_dir.name, out / "latest")
else:
    print("vnetct: set-up failed: mmdebstrap: no network", file=sys.stderr)
sys.exit(status)
"""


def _fake_runs(tmp_path, monkeypatch, statuses):
    """`vnetct run` replaced by a script that records the release's results
    (none for a release without a template) and exits with its status."""
    script = tmp_path / "fake_run.py"
    script.write_text(FAKE_RUN)
    templates = tmp_path / "templates"
    templates.mkdir()
    for release in ("7.2", "10.0"):
        (templates / f"{release}.json").write_text(json.dumps(release_results(release)))
    seen = []
    real = matrix_cli.run_command

    def command(release, run_out, args, first):
        seen.append(real(release, run_out, args, first))
        return [sys.executable, str(script), str(templates / f"{release}.json"), str(run_out),
                str(statuses[release])]

    monkeypatch.setattr(matrix_cli, "run_command", command)
    return seen


def test_the_command_runs_each_release_and_a_run_without_results_is_shown(tmp_path, monkeypatch, capsys):
    seen = _fake_runs(tmp_path, monkeypatch, {"7.2": 1, "10.0": 0, "11.1": 3})
    status = cli.main(["matrix", "--out", str(tmp_path / "out"), "--no-setup", "-k", "failover"])
    printed = capsys.readouterr().out
    assert status == 1
    assert [command[3] for command in seen] == ["7.2", "10.0", "11.1"]
    assert "vnetct matrix: 7.2: exit 1 in " in printed and "3 passed, 1 failed, 0 errors, 1 skipped (QEMU 7.2.22" in printed
    assert "vnetct matrix: 11.1: exit 3 in " in printed and ": no results.json; the end of its output:" in printed
    assert "    vnetct: set-up failed: mmdebstrap: no network" in printed
    assert "not every release met its expectations: 7.2, 11.1" in printed
    (root,) = (tmp_path / "out").glob("matrix-*")
    assert (root / "11.1.log").read_text().startswith("fake vnetct run: 11.1.json")
    view = json.loads((root / "matrix.json").read_text())
    assert [(r["label"], r["state"], r["exit"]) for r in view["releases"]] == [
        ("7.2", "results", 1), ("10.0", "results", 0), ("11.1", NO_RESULTS, 3)]
    assert "the run left no results.json (exit 3)" in view["releases"][2]["problem"]
    assert "no results" in (root / "matrix.html").read_text()


def test_the_command_exits_0_when_every_release_met_its_expectations(tmp_path, monkeypatch, capsys):
    _fake_runs(tmp_path, monkeypatch, {"7.2": 0, "10.0": 0})
    assert cli.main(["matrix", "--out", str(tmp_path / "out"), "--releases", "7.2,10.0"]) == 0
    assert "vnetct matrix: every release's run exited 0" in capsys.readouterr().out


# --- a real browser (headless_browser.py) -------------------------------------------------

@needs_chromium
def test_matrix_in_headless_chromium(recorded, tmp_path):
    html_path = write_matrix(recorded, tmp_path / "matrix")
    loaded = chromium(tmp_path, html_path.as_uri(), "--dump-dom")
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert console_lines(loaded.stderr) == [], "console messages while loading the matrix"
    dom = loaded.stdout
    root = dom[dom.index("<html"):dom.index(">", dom.index("<html"))]
    assert 'data-rendered="0"' in root and "data-errors" not in root, root
    rules = dom[dom.index('<table class="matrix rules">'):]
    rules = rules[:rules.index("</table>")]
    assert '<tr id="rule-FO-MIG-SRC-04" class="rule changed">' in rules
    assert f'<td class="cell violated"><span class="badge violated">violated</span>' in rules
    assert f'<a href="#{"case-" + WAIT_UNPLUG.replace("/", "-")}">{WAIT_UNPLUG}</a>' in rules
    assert dom.count('<tr class="figure-row') == 7 and dom.count('class="moved"') >= 2
    screenshot = tmp_path / "matrix.png"
    shot = chromium(tmp_path, html_path.as_uri(), f"--screenshot={screenshot}", "--window-size=1280,2400")
    assert shot.returncode == 0 and screenshot.stat().st_size > 20_000, shot.stderr[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
