"""The second opinion on a live-TAP migration's loss (vnetct.livetap.upstream_opinion):
upstream's judgement on synthetic timelines, and its place in results.json
beside the case's own outcome, which it never changes."""

import pytest

from test_sut_seam import _outcome, _run_cases
from vnetct.livetap import upstream_opinion

MS = 1_000_000
MIGRATE_NS = 2_000 * MS
CONT_NS = 2_100 * MS  # a 100 ms freeze


def _window(start_ms, end_ms, first_seq=0, count=5):
    return {"first_seq": first_seq, "last_seq": first_seq + count - 1, "count": count, "start_ns": start_ms * MS,
            "end_ns": end_ms * MS, "duration_ms": float(end_ms - start_ms)}


def _report(windows=(), settle_windows=(), end_ms=3_000):
    """An echo stream's analysis: settle 0-1000 ms, before until migrate,
    migration until cont, after until `end_ms`; each window in its phase."""
    bounds = [("settle", 0, 1_000), ("before", 1_000, 2_000), ("migration", 2_000, 2_100), ("after", 2_100, end_ms)]
    phases = [{"name": name, "start_ns": start * MS, "end_ns": end * MS, "loss_windows": []}
              for name, start, end in bounds]
    phases[0]["loss_windows"] += list(settle_windows)
    for window in windows:
        next(p for p in phases if p["start_ns"] <= window["start_ns"] < max(p["end_ns"], p["start_ns"] + 1)
             )["loss_windows"].append(window)
    return {"phases": phases}


def test_a_loss_inside_the_freeze_passes_with_its_figures():
    opinion = upstream_opinion.judge(_report([_window(2_010, 2_090)]), MIGRATE_NS, CONT_NS)
    assert opinion["verdict"] == "pass" and opinion["cont"] == "RESUME (target)"
    assert (opinion["loss_ms"], opinion["cont_ms"], opinion["lost"], opinion["margin_ms"]) == ([10.0, 90.0], 100.0,
                                                                                                5, 50.0)
    assert opinion["reason"] == ("within the freeze: loss 10.0..90.0 ms (5 datagrams in 1 windows), "
                                 "freeze 0..100.0 ms ± 50 ms")


@pytest.mark.parametrize("windows,verdict,says", [
    ([_window(1_960, 2_050)], "pass", "within the freeze"),                       # 40 ms early: inside the margin
    ([_window(1_940, 2_050)], "fail", "the loss began 60.0 ms before migrate start"),
    ([_window(2_050, 2_160)], "fail", "the loss ended 60.0 ms after cont"),
    # Two windows: upstream judges the span from the first lost datagram to the last.
    ([_window(1_900, 1_905), _window(2_020, 2_040, first_seq=40)], "fail", "began 100.0 ms before migrate start"),
])
def test_a_loss_outside_the_freeze_and_its_margin_fails(windows, verdict, says):
    opinion = upstream_opinion.judge(_report(windows), MIGRATE_NS, CONT_NS)
    assert opinion["verdict"] == verdict and says in opinion["reason"], opinion


def test_the_last_lost_datagram_is_the_one_sent_last_not_the_first_echoed_after():
    report = _report([_window(2_050, 2_160, first_seq=10, count=3)])
    sent_ns = [0] * 10 + [2_050 * MS, 2_100 * MS, 2_140 * MS, 2_160 * MS]
    assert upstream_opinion.judge(report, MIGRATE_NS, CONT_NS, sent_ns)["loss_ms"] == [50.0, 140.0]
    assert upstream_opinion.judge(report, MIGRATE_NS, CONT_NS, sent_ns)["verdict"] == "pass"
    assert upstream_opinion.judge(report, MIGRATE_NS, CONT_NS)["verdict"] == "fail"


def test_no_loss_passes_when_the_stream_ran_across_the_freeze():
    opinion = upstream_opinion.judge(_report(settle_windows=[_window(100, 300)]), MIGRATE_NS, CONT_NS)
    assert (opinion["verdict"], opinion["loss_ms"], opinion["lost"]) == ("pass", None, 0)  # settle is not judged
    assert opinion["stream_ms"] == [-1000.0, 1000.0]


def test_no_loss_fails_when_the_stream_stopped_before_cont():
    opinion = upstream_opinion.judge(_report(end_ms=2_100 - 1), MIGRATE_NS, CONT_NS + 50 * MS)
    assert opinion["verdict"] == "fail"
    assert opinion["reason"] == ("no loss, but the stream (-1000.0..99.0 ms) did not run across the freeze "
                                 "(0..150.0 ms)")


CASES = '''
from vnetct.livetap import upstream_opinion

MS = 1_000_000
LATE = {"phases": [{"name": "migration", "start_ns": 0, "end_ns": 300 * MS, "loss_windows": [
    {"first_seq": 0, "last_seq": 9, "count": 10, "start_ns": 10 * MS, "end_ns": 250 * MS, "duration_ms": 240.0}]}]}

@pytest.mark.rule("LT-DATA-01")
def test_own_bounds_pass(case):
    upstream_opinion.record(case, LATE, 0, 100 * MS)

@pytest.mark.rule("LT-DATA-01")
def test_own_bounds_fail(case):
    upstream_opinion.record(case, LATE, 0, 300 * MS)
    raise AssertionError("vnetct's own bound")
'''


def test_the_opinion_lands_in_results_json_and_never_changes_the_outcome(tmp_path):
    result, results = _run_cases(tmp_path, CASES)
    assert results is not None, result.stdout + result.stderr
    passed, failed = _outcome(results, "test_own_bounds_pass"), _outcome(results, "test_own_bounds_fail")
    assert passed["outcome"] == "passed" and failed["outcome"] == "failed"
    assert passed["second_opinions"][upstream_opinion.NAME]["verdict"] == "fail"
    assert passed["second_opinions"][upstream_opinion.NAME]["loss_ms"] == [10.0, 250.0]
    assert failed["second_opinions"][upstream_opinion.NAME]["verdict"] == "pass"
    assert failed["second_opinions"][upstream_opinion.NAME]["judge"] == upstream_opinion.JUDGE
