"""Which runs are alive: each run holds an flock on its lock file,
<locks>/<short id>.lock, for its whole life. The CLI takes it before the
run creates anything and passes it to the case runner (an inherited file
descriptor shares the lock), so the lock is free only once both are gone.

At its start a run sweeps the runs whose lock is free (killed earlier:
SIGKILL, a crash, a power cut): everything named with their short ids
(vnetct.core.sweep), then their lock file. A live run's lock cannot be
taken, so its things are never touched.

The same kind of lock, held for a run's whole life, keeps two runs of the
vf profile off one host (vnetct.sut.sriov)."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List

DEFAULT_LOCKS = Path("/run/vnetct/runs")  # tmpfs: a reboot frees every lock and every name with it


# The lock fds the CLI passes to the case runner: held as long as it lives, never
# passed on to its own children (a QEMU must not keep a dead run alive).
HELD_LOCKS = "VNETCT_HELD_LOCKS"


def keep_held_locks_to_ourselves() -> None:
    for fd in filter(None, os.environ.pop(HELD_LOCKS, "").split(",")):
        try:
            os.set_inheritable(int(fd), False)
        except (OSError, ValueError):
            pass


def locks_dir() -> Path:
    return Path(os.environ.get("VNETCT_RUN_LOCKS", str(DEFAULT_LOCKS)))


class LockBusy(Exception):
    """Another live process holds the lock; `holder` is what it wrote there."""

    def __init__(self, path: Path, holder: dict):
        self.path, self.holder = path, holder
        super().__init__(f"{path} is held by {describe(holder)}")


def describe(holder: dict) -> str:
    if not holder:
        return "a process that has not said who it is"
    return ", ".join(f"{key} {value}" for key, value in holder.items() if key in ("run", "pid", "command"))


@dataclass
class HeldLock:
    path: Path
    fd: int

    def release(self, remove: bool = True) -> None:
        """Removes the file (while still holding the lock), then lets go."""
        if self.fd < 0:
            return
        if remove:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        os.close(self.fd)
        self.fd = -1


def _read(fd: int) -> dict:
    try:
        text = os.pread(fd, 64 * 1024, 0).decode(errors="replace")
        record = json.loads(text) if text.strip() else {}
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


def hold_new(path: Path, record: dict) -> HeldLock:
    """Creates `path` already locked (written beside it, locked, then linked
    in): a sweep never sees it unlocked. FileExistsError if it exists."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".", suffix=".new", dir=path.parent)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, (json.dumps(record) + "\n").encode())
        os.link(temporary, path)
    except BaseException:
        os.close(fd)
        raise
    finally:
        os.unlink(temporary)
    return HeldLock(path, fd)


def hold_exclusive(path: Path, record: dict) -> HeldLock:
    """Locks the long-lived file `path` at once or raises LockBusy naming the
    holder; the holder's record is written into it."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        holder = _read(fd)
        os.close(fd)
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise LockBusy(path, holder) from None
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    return HeldLock(path, fd)


def is_free(path: Path) -> bool:
    """Whether nobody holds the lock on `path` (a missing file is free)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def start_run(short_ids: List[str], record: dict) -> HeldLock:
    """The lock of a starting run whose processes use the name prefixes
    `short_ids` (the first is the run's own)."""
    return hold_new(locks_dir() / f"{short_ids[0]}.lock", {**record, "pid": os.getpid(), "short_ids": short_ids})


def sweep_stale(sweep_names: Callable[[str], List[str]], say: Callable[[str], None]) -> List[str]:
    """Sweeps every run whose lock is free; returns what was cleaned."""
    cleaned: List[str] = []
    directory = locks_dir()
    if not directory.is_dir():
        return cleaned
    for path in sorted(directory.glob("*.lock")):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # another run swept it meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # alive
        stale = HeldLock(path, fd)
        record = _read(fd)
        short_ids = [name for name in record.get("short_ids", [path.stem]) if _is_short_id(name)]
        say(f"vnetct: run {record.get('run', path.stem)} (pid {record.get('pid', '?')}) ended without cleaning up: "
            f"sweeping what it left")
        try:
            for short_id in short_ids:
                cleaned += sweep_names(short_id)
        finally:
            stale.release()
    return cleaned


def _is_short_id(name: object) -> bool:
    return isinstance(name, str) and len(name) == 6 and all(c in "0123456789abcdef" for c in name)
