"""results.json and junit.xml survive a kill -9 at any point of their writing:
each is written to a temporary file, fsync'd and renamed (vnetct.core.atomic_file),
after every case."""

import json
import os
import random
import select
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


def _writer(run_dir, progress: int) -> None:
    """A run's writer as the plugin drives it: one case after another, each
    rewriting results.json and junit.xml, a byte on `progress` before each;
    never returns."""
    results = Results(run_dir, {"run_id": run_dir.name, "profile": "qemu", "command": "", "sut": {}})
    index = 0
    while True:
        os.write(progress, b".")
        results.add_case(_case(index))
        index += 1


def _wait_for_bytes(fd: int, count: int, timeout_s: float) -> None:
    """Reads `count` progress bytes from the writer, or fails naming the wait."""
    deadline = time.monotonic() + timeout_s
    seen = 0
    while seen < count:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"the writer announced {seen} of {count} cases within {timeout_s} s"
        seen += len(os.read(fd, count - seen))


def test_a_run_killed_at_random_points_keeps_whole_files(tmp_path):
    # The kill lands after the writer has begun its second case (so the first case's files are
    # complete, whatever the machine's load) and anywhere within the next few cases' writes.
    # A kill that interrupts a write leaves that write's temporary file behind: some must, or
    # the kills never hit a write and the test proves nothing.
    rng = random.Random(17)
    interrupted = 0
    started = time.monotonic()
    for run in range(RUNS):
        run_dir = tmp_path / f"run-{run}"
        run_dir.mkdir()
        progress_read, progress_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: write until killed
            try:
                os.close(progress_read)
                _writer(run_dir, progress_write)
            finally:
                os._exit(1)
        os.close(progress_write)
        try:
            _wait_for_bytes(progress_read, 2, 10.0)
            time.sleep(rng.uniform(0.0, 0.01))  # the kill point: within the next cases' writes
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(progress_read)
        cases = json.loads((run_dir / "results.json").read_text())["cases"]
        assert cases, "results.json holds no case although the writer had finished its first"
        suite = ElementTree.parse(run_dir / "junit.xml").getroot().find("testsuite")
        # junit.xml follows results.json: it holds the same cases, or the one case before.
        assert int(suite.get("tests")) in (len(cases), len(cases) - 1)
        interrupted += any(path.name.endswith(".tmp") for path in run_dir.iterdir())
    assert interrupted > 0, f"none of {RUNS} kills interrupted a write: kill later"
    assert time.monotonic() - started < 60


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
