"""results.json and junit.xml survive a kill -9 at any point of their writing:
each is written to a temporary file, fsync'd and renamed (vnetct.core.atomic_file),
after every case."""

import json
import os
import random
import signal
import time
import xml.etree.ElementTree as ElementTree

from vnetct.core.atomic_file import write_atomically
from vnetct.report.results import Results

RUNS = 200


def _case(index: int) -> dict:
    return {"id": f"failover/kill/case-{index}", "nodeid": f"cases/failover/kill.py::test_{index}",
            "rules": [{"id": "FO-NEG-01", "sentence": "s."}], "outcome": "failed" if index % 3 else "passed",
            "reason": "AssertionError: seen", "details": "x" * 4000, "duration_s": 1.0, "started": "t",
            "artifacts": {}, "metrics": {}, "steps": []}


def _writer(run_dir) -> None:
    """A run's writer as the plugin drives it: one case after another, each
    rewriting results.json and junit.xml; never returns."""
    results = Results(run_dir, {"run_id": run_dir.name, "profile": "qemu", "command": "", "sut": {}})
    index = 0
    while True:
        results.add_case(_case(index))
        index += 1


def test_a_run_killed_at_random_points_keeps_whole_files(tmp_path):
    rng = random.Random(17)
    written = 0
    started = time.monotonic()
    for run in range(RUNS):
        run_dir = tmp_path / f"run-{run}"
        run_dir.mkdir()
        pid = os.fork()
        if pid == 0:  # the child: write until killed
            try:
                _writer(run_dir)
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0.0, 0.04))  # the kill point: anywhere in the first few cases' writes
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        results_path, junit_path = run_dir / "results.json", run_dir / "junit.xml"
        if results_path.exists():
            cases = json.loads(results_path.read_text())["cases"]
            written += 1
            if junit_path.exists():
                suite = ElementTree.parse(junit_path).getroot().find("testsuite")
                # junit.xml follows results.json: it holds the same cases, or the one case before.
                assert int(suite.get("tests")) in (len(cases), len(cases) - 1)
    assert written > RUNS // 2, f"only {written} of {RUNS} runs wrote before the kill: kill later"
    assert time.monotonic() - started < 30


def test_the_temporary_file_goes_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    write_atomically(target, "{}\n")

    def refuse(*_args):
        raise OSError("refused")

    monkeypatch.setattr(os, "replace", refuse)
    try:
        write_atomically(target, "[]\n")
    except OSError:
        pass
    monkeypatch.undo()
    assert target.read_text() == "{}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
