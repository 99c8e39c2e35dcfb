"""The run's CPU-quiet slot (vnetct.core.quiet): a quiet case waits for the
running cases to end, and no case starts while it waits or runs."""

from __future__ import annotations

import threading

from vnetct.core.quiet import QuietSlot


def _in_thread(slot: QuietSlot, quiet: bool, log: list, name: str, release: threading.Event) -> threading.Thread:
    def run():
        slot.enter(quiet)
        log.append(f"{name} in")
        release.wait(10)
        log.append(f"{name} out")
        slot.leave()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _wait_for(log: list, entry: str) -> None:
    done = threading.Event()
    for _ in range(1000):  # bounded: 10 s
        if entry in log:
            return
        done.wait(0.01)
    raise AssertionError(f"never saw {entry!r}: {log}")


def test_a_quiet_case_runs_alone_and_goes_before_later_cases(tmp_path):
    path = tmp_path / "cpu-quiet.lock"
    log: list = []
    first, quiet, later = threading.Event(), threading.Event(), threading.Event()
    running = _in_thread(QuietSlot(path), False, log, "running", first)
    _wait_for(log, "running in")
    waiting = _in_thread(QuietSlot(path), True, log, "quiet", quiet)
    # The quiet case now holds the gate: a case that comes after it must wait too.
    _wait_for_gate_held(path)
    after = _in_thread(QuietSlot(path), False, log, "later", later)
    assert "quiet in" not in log, "the quiet case must wait for the running case"
    first.set()
    _wait_for(log, "quiet in")
    assert "later in" not in log, "no case starts while the quiet case runs"
    quiet.set()
    _wait_for(log, "later in")
    later.set()
    for thread in (running, waiting, after):
        thread.join(10)
    assert log == ["running in", "running out", "quiet in", "quiet out", "later in", "later out"]


def _wait_for_gate_held(path) -> None:
    import fcntl

    for _ in range(1000):
        with open(path.with_name(path.name + ".gate"), "a") as gate:
            try:
                fcntl.flock(gate, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return
        threading.Event().wait(0.01)
    raise AssertionError("the quiet case never took the gate")


def test_ordinary_cases_share_the_slot_and_consecutive_quiet_cases_keep_it(tmp_path):
    path = tmp_path / "cpu-quiet.lock"
    one, two = QuietSlot(path), QuietSlot(path)
    assert one.enter(False) < 1 and two.enter(False) < 1, "two ordinary cases run side by side"
    one.leave()
    two.leave()
    quiet = QuietSlot(path)
    quiet.enter(True)
    assert quiet.enter(True) == 0.0 and quiet.quiet
    quiet.leave()
    assert one.enter(False) < 1
    one.leave()
