"""`vnetct run --repeat N`: the cases whose outcome changed between runs."""

import json
import subprocess

from vnetct.cli.repeat import _without_repeat, flips
from vnetct.core import paths


def test_only_changed_outcomes_are_reported():
    runs = [{"a": "passed", "b": "failed", "c": "passed"}, {"a": "passed", "b": "failed", "c": "failed"},
            {"a": "passed", "b": "failed"}]
    assert flips(runs) == {"c": ["passed", "failed", "absent"]}


def test_the_repeat_option_is_not_passed_to_each_run():
    assert _without_repeat(["--repeat", "3", "-k", "x", "--repeat=2", "--no-setup"]) == ["-k", "x", "--no-setup"]


def test_two_reference_runs_flip_nothing(tmp_path):
    result = subprocess.run([str(paths.REPO / "vnetct"), "run", "--no-setup", "--profile", "reference", "-k",
                             "negotiation", "--repeat", "2", "--out", str(tmp_path)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    summary = json.loads(next(tmp_path.glob("repeat-*/repeat.json")).read_text())
    assert len(summary["runs"]) == 2 and summary["flips"] == {}
    assert "no case changed outcome across 2 runs" in result.stdout


def test_a_run_without_results_is_reported_not_compared(tmp_path):
    """A run that dies before writing results.json (here: refused at once) is
    no evidence: the repetition says so and fails instead of crashing or
    flipping every case."""
    result = subprocess.run([str(paths.REPO / "vnetct"), "run", "--no-setup", "--profile", "reference",
                             "--mutation", "NoSuchMutation", "--repeat", "2", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    summary = json.loads(next(tmp_path.glob("repeat-*/repeat.json")).read_text())
    assert [run.get("incomplete") for run in summary["runs"]] == ["the run wrote no results.json"] * 2
    assert summary["flips"] == {} and "the repetition is incomplete" in result.stdout
