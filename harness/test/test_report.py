"""The HTML report (vnetct.report): rendered from synthetic results.json files
(with and without the optional timeline, series and expectations), and
loaded in a real headless Chromium. No VM needed."""

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from headless_browser import chromium, console_lines, needs_chromium
from vnetct.cli import main as cli
from vnetct.core import paths
from vnetct.report import ResultsError, ThresholdError, render, write_report
from vnetct.report.rules_table import rules_table

RULE = {"id": "FO-MIG-SRC-01", "sentence": "When a migration starts, the source emits UNPLUG_PRIMARY."}
SUT = {"qemu_binary": "/usr/bin/qemu-system-x86_64", "qemu_version": "10.0.2 (Debian 1:10.0.2+ds-2)",
       "accelerator": {"name": "tcg", "reason": "KVM boot failed", "cpu": "max"}, "machine": "q35",
       "guest_kernel": "6.12.117+deb12-amd64", "guest_image_digest": "3d0d17", "host_kernel": "6.18.44"}


EXPECTATION = {"file": "expectations/qemu-10.0.yaml", "line": 12,
               "case": "failover/removal/replacement-primary-after-device-del", "outcome": "failed",
               "violated_rules": ["FO-MIG-SRC-01"],
               "finding": "QEMU 10.0: after device_del the standby still names the old primary",
               "evidence": {"observed": "device_add: Cannot attach more than one primary device"}}


def _timeline():
    return {"origin": "migrate command",
            "tracks": [{"name": "source QMP", "events": [{"t_ms": 1.9, "label": "MIGRATION setup"},
                                                         {"t_ms": 2.9, "label": "UNPLUG_PRIMARY hostdev0"},
                                                         {"t_ms": 256.9, "label": "MIGRATION active"},
                                                         {"t_ms": 1125.9, "label": "MIGRATION completed"}]},
                       {"name": "target QMP", "events": [{"t_ms": 1142.6, "label": "FAILOVER_NEGOTIATED net1"},
                                                         {"t_ms": 1146.9, "label": "RESUME"}]},
                       {"name": "guest on source", "events": [{"t_ms": 117.9, "label": "netdev-removed eth2"}]},
                       {"name": "guest on target", "events": [{"t_ms": 2015.7, "label": "netdev-added eth2"}]}],
            "phases": [{"name": "before", "start_ms": -1000.0, "end_ms": 2.9},
                       {"name": "wait-unplug", "start_ms": 2.9, "end_ms": 256.9},
                       {"name": "migration", "start_ms": 256.9, "end_ms": 1146.9},
                       {"name": "re-plug", "start_ms": 1146.9, "end_ms": 2699.0},
                       {"name": "after", "start_ms": 2699.0, "end_ms": 3000.0}],
            "windows": [{"track": "traffic", "start_ms": 25.4, "end_ms": 115.6, "label": "18 lost (seq 437-454)"},
                        {"track": "traffic", "start_ms": 2135.2, "end_ms": 2635.3, "label": "100 lost (seq 859-958)"}]}


def _series():
    sent = [-1000.0 + 5.0 * index for index in range(801)]
    rtt = [None if 25 <= s <= 115 or 2135 <= s <= 2635 else 2.0 + (index % 7) for index, s in enumerate(sent)]
    return {"traffic": {"sent_ms": sent, "rtt_ms": rtt}}


def _case(case_id, outcome, **extra):
    case = {"id": case_id, "nodeid": f"cases/{case_id}.py::test_x", "rules": [RULE], "outcome": outcome,
            "reason": None, "duration_s": 12.5, "started": "2026-11-22T04:44:10.000+00:00", "artifacts": {},
            "metrics": {}, "steps": [{"t": 0.1, "text": "starting QEMU for mig-source"}]}
    case.update(extra)
    return case


def make_run(root: Path, name: str = "20261122-044407-8c00e9", finished=True, cases=None, **header) -> Path:
    run_dir = root / name
    (run_dir / "lane-a" / "vms" / "mig-source").mkdir(parents=True)
    (run_dir / "lane-a" / "vms" / "mig-source" / "qmp-mig-source.jsonl").write_text("{}\n")
    if cases is None:
        cases = [
            _case("failover/migrate/out-and-in/unplug-migrate-replug/acpi", "passed", lane="lane-a",
                  artifacts={"qmp-mig-source": "lane-a/vms/mig-source/qmp-mig-source.jsonl",
                             "traffic.json": "lane-a/cases/gone/traffic.json"},
                  metrics={"unplug_latency": {"value": 0.115, "unit": "s"},
                           "replug_carrying_latency": {"value": 1.552, "unit": "s"},
                           "qemu_downtime": {"value": 107, "unit": "ms"},
                           "switchover_lost": {"value": 118, "unit": ""},
                           "longest_loss_window": {"value": 500.1, "unit": "ms"}},
                  timeline=_timeline(), series=_series()),
            _case("failover/removal/replacement-primary-after-device-del", "failed",
                  reason="AssertionError: the host refused a new primary <hostdev1> & more",
                  details="Traceback ...\nE   AssertionError: refused\n",
                  violated_rules=["FO-MIG-SRC-01"], expected=True, expectation=EXPECTATION,
                  violations=[{"vm": "hp-replace", "rule": "FO-NEG-02", "observed": "not shown by query-pci",
                               "expected": "hostdev1 visible in query-pci", "at_end_of_trace": True,
                               "entry": {"kind": "hot-plug", "t_ms": 6664.4}}],
                  log_tails={"serial-hp-replace": "[    6.1] e1000e: probe failed\n"}),
            _case("livetap/handoff/zero-loss", "skipped", reason="QEMU lacks backend-transfer"),
        ]
    results = {"schema": "vnetct-results/1", "run_id": name, "profile": "qemu",
               "command": "./vnetct run -k 'config and not igb'", "sut": SUT, "lanes": ["lane-a"],
               "started": "2026-11-22T04:44:07.120+00:00",
               "finished": "2026-11-22T04:46:13.620+00:00" if finished else None,
               "interrupted": False, "run_problems": [], "cases": cases, **header}
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    return run_dir


class _Page(HTMLParser):
    """Tags with their attributes, and the text, of a rendered report."""

    def __init__(self, html: str):
        super().__init__()
        self.tags = []
        self.text = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag, css_class=None):
        return [attrs for name, attrs in self.tags
                if name == tag and (css_class is None or css_class in (attrs.get("class") or "").split())]


def test_report_shows_summary_sut_cases_and_pictures(tmp_path):
    run_dir = make_run(tmp_path)
    path = write_report(run_dir)
    assert path == run_dir / "report.html"
    html = path.read_text()
    page = _Page(html)
    text = " ".join(page.text)
    for expected in ("failed", "10.0.2 (Debian 1:10.0.2+ds-2)", "tcg (cpu max)", "q35", "6.12.117+deb12-amd64",
                     "./vnetct run -k 'config and not igb'", "FO-MIG-SRC-01", RULE["sentence"],
                     "QEMU 10.0: after device_del the standby still names the old primary",
                     "QEMU lacks backend-transfer", "2 min 6 s"):
        assert expected in text, expected
    # The timeline: a row per track plus the traffic loss row, one mark per event, one bar per loss window.
    assert len(page.all("svg", "timeline")) == 1
    assert len(page.all("g", "mark")) == 8
    assert len(page.all("g", "loss")) == 2
    assert len(page.all("rect", "phase")) >= 5
    # The traffic chart: the RTT line and the loss bins.
    assert len(page.all("svg", "series")) == 1
    assert page.all("path", "rtt")[0]["d"].count("M") == 3  # interrupted by the two loss windows
    assert page.all("rect", "lost")
    # The violation from the trace checker and the log tail of the failed case.
    assert "hostdev1 visible in query-pci" in text and "e1000e: probe failed" in text


def test_report_is_self_contained_with_relative_artifact_links(tmp_path):
    run_dir = make_run(tmp_path)
    html = write_report(run_dir).read_text()
    page = _Page(html)
    assert not page.all("link") and not [a for a in page.all("script") if "src" in a] and not page.all("img")
    hrefs = [attrs["href"] for attrs in page.all("a")]
    assert not [h for h in hrefs if "://" in h or h.startswith("/")], "links must be relative"
    artifact = "lane-a/vms/mig-source/qmp-mig-source.jsonl"
    assert artifact in hrefs and (run_dir / unquote(artifact)).is_file()
    assert "results.json" in hrefs
    assert "missing: lane-a/cases/gone/traffic.json" in " ".join(page.text)
    # Written elsewhere, the links still lead into the run directory.
    elsewhere = tmp_path / "reports" / "r.html"
    elsewhere.parent.mkdir()
    write_report(run_dir, output=elsewhere)
    assert f"../{run_dir.name}/{artifact}" in [a["href"] for a in _Page(elsewhere.read_text()).all("a")]


def test_text_from_results_is_escaped(tmp_path):
    html = write_report(make_run(tmp_path)).read_text()
    assert "<hostdev1>" not in html and "&lt;hostdev1&gt; &amp; more" in html


def test_an_older_or_unfinished_run_without_pictures_still_reports(tmp_path):
    run_dir = make_run(tmp_path, finished=False, sut={}, cases=[
        {"id": "failover/config/primary-without-id", "nodeid": "n", "rules": [], "outcome": "passed",
         "reason": None, "duration_s": 0.4, "started": "t", "artifacts": {}, "metrics": {}, "steps": []}])
    page = _Page(write_report(run_dir).read_text())
    assert "incomplete" in " ".join(page.text)
    assert not page.all("svg", "timeline") and not page.all("svg", "series")


def test_a_second_opinion_is_shown_beside_the_outcome_it_does_not_change(tmp_path):
    from vnetct.livetap import upstream_opinion

    ms = 1_000_000
    report = {"phases": [{"name": "migration", "start_ns": 0, "end_ns": 300 * ms, "loss_windows": [
        {"first_seq": 0, "last_seq": 9, "count": 10, "start_ns": 10 * ms, "end_ns": 250 * ms, "duration_ms": 240.0}]}]}
    opinion = upstream_opinion.judge(report, 0, 100 * ms)
    run_dir = make_run(tmp_path, cases=[_case("livetap/qemu-adapter/local-migration-loss/new-tap", "passed",
                                              second_opinions={upstream_opinion.NAME: opinion})])
    html = write_report(run_dir).read_text()
    text = " ".join(" ".join(_Page(html).text).split())
    assert "Second opinion" in text and upstream_opinion.JUDGE in text and "it does not change it" in text
    assert "the loss ended 150.0 ms after cont: loss 10.0..250.0 ms (10 datagrams in 1 windows)" in text
    paragraph = html[html.index('<p class="second-opinion">'):]
    paragraph = paragraph[:paragraph.index("</p>")]
    assert '<span class="badge failed">fail</span>' in paragraph  # the case itself passed
    assert '<section class="case passed"' in html


def test_a_malformed_timeline_is_a_record_problem_not_a_crash(tmp_path):
    run_dir = make_run(tmp_path, cases=[_case("a/b/c", "passed", timeline={"tracks": [{"name": "x", "events": [
        {"label": "no time"}]}], "phases": [], "windows": []})])
    text = " ".join(_Page(write_report(run_dir).read_text()).text)
    assert "could not draw this case's timeline" in text


def test_certification_checks_figures_against_thresholds(tmp_path):
    run_dir = make_run(tmp_path)
    page = _Page(write_report(run_dir).read_text())
    assert [b for b in page.all("span", "badge") if "within" in b["class"]]
    assert not [b for b in page.all("span", "badge") if "exceeded" in b["class"]]
    strict = tmp_path / "strict.json"
    strict.write_text(json.dumps({"downtime": 50, "unplug_latency": 0.1}))
    html = render(run_dir, thresholds=strict)
    assert html.count('class="badge exceeded">exceeded<') == 2  # the two figures' verdicts
    assert "sha256:" in html and "strict.json" in html
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"downtime_ms": 5}))
    with pytest.raises(ThresholdError, match="unknown figure 'downtime_ms'"):
        render(run_dir, thresholds=bad)


def test_several_runs_are_compared(tmp_path):
    newer = make_run(tmp_path, "20261122-050000-aaaaaa")
    older = make_run(tmp_path, "20261121-050000-bbbbbb", cases=[
        _case("failover/migrate/out-and-in/unplug-migrate-replug/acpi", "failed",
              metrics={"qemu_downtime": {"value": 0.2, "unit": "s"}})])
    page = _Page(write_report(newer, [older]).read_text())
    text = " ".join(page.text)
    assert "Comparison of 2 runs" in text and "20261121-050000-bbbbbb" in text
    assert page.all("tr", "changed"), "a case whose outcome changed is marked"
    assert "200 ms" in text  # the older run's downtime, converted from s to the figure's unit


def _first_table(html: str) -> str:
    body = html[html.index("<body"):]
    start = body.index("<table")
    return body[start:body.index("</table>", start)]


LT_RULE = {"id": "LT-DATA-01", "area": "livetap", "sentence": "No frame is lost across the hand-off."}


def test_report_opens_with_the_rules_table(tmp_path):
    cases = [_case("failover/migrate/a", "passed"),
             _case("failover/removal/b", "failed", reason="refused", expected=True,
                   expectation=EXPECTATION),
             _case("livetap/reference-backend/handoff", "passed", rules=[LT_RULE], subject="reference"),
             _case("livetap/qemu-adapter/handoff", "skipped", rules=[LT_RULE], subject="sut",
                   reason="QEMU lacks backend-transfer")]
    unjudged = {"id": "TEAM-08", "area": "teaming", "sentence": "Bad input is refused with file and line."}
    run_dir = make_run(tmp_path, cases=cases, rules=rules_table([RULE, LT_RULE, unjudged], cases))
    html = write_report(run_dir).read_text()
    first = _first_table(html)
    assert 'class="rules"' in first and html.index('id="rules"') < html.index('id="certification"')
    rows = {attrs["id"]: attrs["class"].split() for attrs in _Page(first).all("tr") if "id" in attrs}
    assert rows == {"rule-FO-MIG-SRC-01": ["rule", "violated"], "rule-LT-DATA-01": ["rule", "not-judged"],
                    "rule-TEAM-08": ["rule", "not-judged", "unselected"]}
    text = " ".join(_Page(first).text)
    assert "case livetap/qemu-adapter/handoff: skipped: QEMU lacks backend-transfer" in text
    assert "no case selected" in text and "unattributed" in text and "expected" in text
    # The evidence links lead to the case entries.
    hrefs = [attrs["href"] for attrs in _Page(first).all("a")]
    assert "#case-failover-removal-b" in hrefs and 'id="case-failover-removal-b"' in html
    reference = _Page(first[first.index('id="rule-LT-DATA-01"'):]).all("span", "badge")
    assert "passed" in [b["class"].split()[1] for b in reference]


def test_a_run_without_a_rules_table_gets_one_computed_from_its_cases(tmp_path):
    html = write_report(make_run(tmp_path)).read_text()
    first = _first_table(html)
    assert 'id="rule-FO-MIG-SRC-01" class="rule violated"' in first
    assert "computed from its cases" in html


def test_vnetct_report_command(tmp_path, capsys):
    run_dir = make_run(tmp_path)
    assert cli.main(["report", str(run_dir)]) == 0
    assert (run_dir / "report.html").is_file() and "report.html" in capsys.readouterr().out
    assert cli.main(["report", str(tmp_path / "nowhere")]) == cli.EXIT_USAGE
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(ResultsError):
        write_report(tmp_path / "nowhere")


# --- a real browser (headless_browser.py) ------------------------------------------

@needs_chromium
def test_chromium_catches_a_broken_page(tmp_path):
    """The browser check below is only worth something if it sees errors."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><script>undefined_function();</script></body></html>")
    result = chromium(tmp_path, page.as_uri(), "--dump-dom")
    assert any("undefined_function" in line for line in console_lines(result.stderr)), result.stderr[-2000:]


@needs_chromium
def test_report_in_headlesschromium(tmp_path):
    run_dir = make_run(tmp_path)
    report = write_report(run_dir)
    loaded = chromium(tmp_path, report.as_uri(), "--dump-dom")
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert console_lines(loaded.stderr) == [], "console messages while loading the report"
    dom = loaded.stdout
    root = dom[dom.index("<html"):dom.index(">", dom.index("<html"))]
    assert 'data-rendered="1"' in root, "the report's script ran and found one timeline"
    assert "data-errors" not in root, root
    assert dom.count('<g class="mark">') == 8 and '<svg class="series"' in dom
    # The report opens with the rules table: a rule id and its verdict, the violated rule marked.
    first = _first_table(dom)
    assert 'class="rules"' in first and 'class="rule-id mono">FO-MIG-SRC-01' in first
    assert '<tr id="rule-FO-MIG-SRC-01" class="rule violated">' in first
    assert '<td class="verdict-sut"><span class="badge violated">violated</span>' in first
    screenshot = tmp_path / "report.png"
    shot = chromium(tmp_path, report.as_uri(), f"--screenshot={screenshot}", "--window-size=1280,2200")
    assert shot.returncode == 0 and screenshot.stat().st_size > 20_000, shot.stderr[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    kept = paths.OUT / "report-test"
    kept.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(screenshot, kept / "report.png")
    shutil.copyfile(report, kept / "report.html")


def test_the_run_writes_its_report_but_a_report_problem_never_fails_it(tmp_path, capsys):
    run_dir = make_run(tmp_path)
    assert cli._write_report(run_dir) == run_dir / "report.html"
    assert cli._write_report(tmp_path / "empty") is None  # no results.json: nothing to report on
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "results.json").write_text("{ not json")
    assert cli._write_report(broken) is None
    assert "could not write report.html" in capsys.readouterr().err


def test_the_selftest_page_shows_each_fault_its_rule_and_what_caught_it(tmp_path):
    from vnetct.report import write_selftest_report
    run = {"command": "x", "exit": 1, "dir": str(tmp_path / "f1" / "run"), "wall_s": 9.5}
    summary = {"qemu": "/usr/bin/qemu-system-x86_64", "verdict_bound_s": 15.0, "caught": 1, "of": 2,
               "baseline": {"command": "x", "exit": 0, "dir": str(tmp_path / "baseline" / "run"), "wall_s": 30.0,
                            "durations_s": {"a/b": 10.0}, "failed": []},
               "faults": [{"fault": "caught-one", "rule": "FO-NEG-02", "bug": "a <b>bug</b>", "mechanism": "argv",
                           "caught": 1, "of": 1, "ok": True, "named_other_rules": [], "run": run,
                           "cases": [{"id": "a/b", "outcome": "failed", "violated_rules": ["FO-NEG-02"],
                                      "beyond_normal_s": 2.5}]},
                          {"fault": "missed-one", "rule": "FO-MIG-SRC-05", "bug": "b", "mechanism": "qmp-interposer",
                           "caught": 0, "of": 1, "ok": False, "named_other_rules": [], "run": run,
                           "cases": [{"id": "c/d", "outcome": "passed", "violated_rules": None,
                                      "beyond_normal_s": None}]}]}
    html = write_selftest_report(tmp_path, summary).read_text()
    assert "1 of 2 faults caught" in html and "a &lt;b&gt;bug&lt;/b&gt;" in html
    assert "a/b: failed, named FO-NEG-02, +2.5 s" in html and 'class="badge failed">0 of 1' in html
    assert 'href="f1/run/report.html"' in html
