"""A run leaves nothing behind however its case runner ends, and runs killed
earlier are swept at the next start, never a run that is alive
(vnetct.core.run_lock, vnetct.core.sweep). Needs root (namespaces, links)."""

import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from vnetct.core import paths, run_lock, sweep

# Its case runner starts the live-TAP backends (a source, targets listening for it) in a namespace:
# killed while the targets wait, the run used to leave them behind, blocked in accept4 for ever.
CASE = "livetap/reference-backend/handoff-loses-nothing/10kpps-1queue-small"


@pytest.fixture(autouse=True)
def root_only():
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces, links)")


@pytest.fixture
def locks(tmp_path, monkeypatch):
    directory = tmp_path / "locks"
    monkeypatch.setenv("VNETCT_RUN_LOCKS", str(directory))
    return directory


def _traces(short_id: str) -> list:
    """Everything on the host named with `short_id`."""
    found = [f"namespace {name}" for name in os.listdir("/run/netns") if short_id in name] \
        if os.path.isdir("/run/netns") else []
    found += [f"link {name}" for name in os.listdir("/sys/class/net") if short_id in name]
    found += [f"path {path}" for path in Path("/tmp").iterdir() if short_id in path.name]
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if short_id in cmdline and sweep.alive(int(pid)):
                found.append(f"process {pid}: {cmdline[:100]}")
    return found


def _children(pid: int) -> list:
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            pass
    return children


def _wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        select.select([], [], [], 0.1)  # a bounded poll of /proc: there is no event to wait on
    raise AssertionError(f"waited {timeout:.0f} s for {what}")


@pytest.mark.heavy("runs a live-TAP case twice and kills its case runner (about 20 s)")
@pytest.mark.parametrize("death", [signal.SIGKILL, signal.SIGSEGV], ids=["sigkill", "sigsegv"])
def test_a_case_runner_killed_mid_case_leaves_nothing(tmp_path, locks, death):
    cli = subprocess.Popen([str(paths.REPO / "vnetct"), "run", "--no-setup", "-j", "1", "-k", CASE, "--out", str(tmp_path / "out")], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(cli.stdout), daemon=True)
    reader.start()
    try:
        run_line = _wait_until(lambda: next((l for l in lines if l.startswith("vnetct: run ")), None), 120,
                               "the run to start")
        short_id = re.match(r"vnetct: run \S+-([0-9a-f]{6}),", run_line).group(1)
        _wait_until(lambda: [line for line in _traces(short_id) if "livetap_backend target" in line], 180,
                    "the case's live-TAP targets")
        assert list(locks.glob("*.lock")), "the live run holds no lock"
        pytest_pid = next(pid for pid in _children(cli.pid) if "pytest" in Path(f"/proc/{pid}/cmdline").read_text())
        os.kill(pytest_pid, death)
        status = cli.wait(timeout=120)
        reader.join(timeout=10)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    output = "".join(lines)
    assert status == 1, output[-3000:]  # the runner left things behind: cleaned, and the run says so
    assert "the case runner left this behind, cleaned now" in output, output[-3000:]
    assert _traces(short_id) == [], output[-3000:]
    assert not list(locks.glob("*.lock")), "the run's lock file outlived it"


def _hold_in_child(path: Path, record: dict, die: bool):
    """A process that takes a run's lock and then dies (killed) or lives on."""
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            run_lock.hold_new(path, record)
            os.write(ready_write, b"x")
            if not die:
                select.select([], [], [])  # alive until killed
        finally:
            os._exit(0)
    os.close(ready_write)
    assert os.read(ready_read, 1) == b"x"
    os.close(ready_read)
    if die:
        os.kill(pid, signal.SIGKILL)
    return pid


def _leave_things(short_id: str) -> list:
    """What a run's case runner makes, named with its short id: a namespace, a
    host link, a socket directory and a process naming it."""
    subprocess.run(["ip", "netns", "add", f"vnetct-{short_id}-1"], check=True)
    subprocess.run(["ip", "link", "add", f"v{short_id}0br", "type", "bridge"], check=True)
    root = sweep.make_socket_root(short_id)
    process = subprocess.Popen([sys.executable, "-c", "import select; select.select([], [], [])", str(root / "qmp")],
                               start_new_session=True)
    return [root, process]


def test_the_next_run_sweeps_a_killed_run_and_not_a_live_one(tmp_path, locks):
    dead_id, live_id = os.urandom(3).hex(), os.urandom(3).hex()
    dead_holder = _hold_in_child(locks / f"{dead_id}.lock", {"run": "dead", "short_ids": [dead_id]}, die=True)
    os.waitpid(dead_holder, 0)
    live_holder = _hold_in_child(locks / f"{live_id}.lock", {"run": "live", "short_ids": [live_id]}, die=False)
    made = []
    try:
        dead_things = _leave_things(dead_id)
        made.append(dead_things)
        live_things = _leave_things(live_id)
        made.append(live_things)
        assert len(_traces(dead_id)) == 4 and len(_traces(live_id)) == 4
        result = subprocess.run([str(paths.REPO / "vnetct"), "run", "--no-setup", "--profile", "reference",
                                 "-k", "FO-NEG-01", "--out", str(tmp_path / "out")],
                                capture_output=True, text=True, timeout=180, check=False)
        assert "run dead (pid ?) ended without cleaning up" in result.stdout, result.stdout[-3000:]
        assert _traces(dead_id) == [], result.stdout[-3000:]
        assert dead_things[1].wait(timeout=10) == -signal.SIGKILL
        assert not (locks / f"{dead_id}.lock").exists()
        assert len(_traces(live_id)) == 4, "a live run's things were touched"
        assert (locks / f"{live_id}.lock").exists() and live_things[1].poll() is None
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    finally:
        os.kill(live_holder, signal.SIGKILL)
        os.waitpid(live_holder, 0)
        for things in made:
            things[1].kill()
            things[1].wait()
        sweep.sweep_names(live_id)
        sweep.sweep_names(dead_id)
    assert _traces(live_id) == []


def test_a_lock_is_never_seen_unlocked(locks):
    held = run_lock.start_run(["abcdef"], {"run": "r"})
    try:
        assert not run_lock.is_free(held.path)
        assert json.loads(held.path.read_text())["short_ids"] == ["abcdef"]
        assert run_lock.sweep_stale(lambda short_id: [f"swept {short_id}"], lambda text: None) == []
        with pytest.raises(FileExistsError):
            run_lock.start_run(["abcdef"], {"run": "again"})
    finally:
        held.release()
    assert not held.path.exists() and [p.name for p in locks.iterdir()] == []


def test_the_case_runner_keeps_the_run_lock_from_its_children(locks, monkeypatch):
    held = run_lock.start_run(["abcdee"], {"run": "r"})
    try:
        os.set_inheritable(held.fd, True)  # as pass_fds leaves it in the case runner
        monkeypatch.setenv(run_lock.HELD_LOCKS, str(held.fd))
        run_lock.keep_held_locks_to_ourselves()
        assert not os.get_inheritable(held.fd), "a QEMU would inherit the lock and keep a dead run alive"
        assert run_lock.HELD_LOCKS not in os.environ
    finally:
        held.release()
