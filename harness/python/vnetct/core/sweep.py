"""What a run leaves behind if its case runner dies, found by the names the
run gives it: every name carries the run's 6-hex-char short id (one per
xdist worker, vnetct.lanes.short_ids).

  network namespaces  vnetct-<short id>-<n>          (and whatever runs in them)
  host links          v<short id><n>...              (profile vf's carriers)
  socket directories  /tmp/vnetct-<short id>-XXXXXX  (mkdtemp, 0700)
  processes           any whose command line names a socket directory (QEMU,
                      the live-TAP backends, their helpers), and any in a namespace

The end-of-case-runner sweep (vnetct.vm.factory.sweep_run), the CLI's final
sweep and the sweep of runs killed earlier (vnetct.core.run_lock) all use it.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import stat
import tempfile
from pathlib import Path
from typing import List, Optional

SOCKET_PARENT = Path("/tmp")  # short: a unix socket path has 108 bytes
NETNS_DIR = Path("/run/netns")


def netns_prefix(short_id: str) -> str:
    return f"vnetct-{short_id}"


def socket_prefix(short_id: str) -> str:
    return f"vnetct-{short_id}-"


def make_socket_root(short_id: str) -> Path:
    """The run's socket directory: created 0700 under a name nobody could
    know or take beforehand."""
    return Path(tempfile.mkdtemp(prefix=socket_prefix(short_id), dir=SOCKET_PARENT))


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            return ") Z" not in stat_file.read()
    except OSError:
        return False


def _cmdline(pid: int) -> Optional[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None


def _pids() -> List[int]:
    own = os.getpid()
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit() and int(entry) != own]


def leftover_processes(marker: str) -> List[str]:
    """Live processes whose command line mentions `marker`, as 'pid: cmdline'."""
    found = []
    for pid in _pids():
        cmdline = _cmdline(pid)
        if cmdline is not None and marker in cmdline and alive(pid):
            found.append(f"{pid}: {cmdline[:120]}")
    return found


def processes_in_namespaces(prefix: str) -> List[str]:
    """Live processes inside a network namespace named `prefix`..., as 'pid: cmdline'."""
    try:
        inodes = {(os.stat(NETNS_DIR / name).st_dev, os.stat(NETNS_DIR / name).st_ino): name
                  for name in os.listdir(NETNS_DIR) if name.startswith(prefix)}
    except OSError:
        return []
    found = []
    for pid in _pids() if inodes else []:
        try:
            namespace = os.stat(f"/proc/{pid}/ns/net")
        except OSError:
            continue
        if (namespace.st_dev, namespace.st_ino) in inodes and alive(pid):
            found.append(f"{pid}: {(_cmdline(pid) or '')[:120]} (in {inodes[namespace.st_dev, namespace.st_ino]})")
    return found


def kill_processes(lines: List[str]) -> List[str]:
    """SIGKILLs each 'pid: ...' (and its process group when it leads one) and
    waits, bounded, until it is gone; returns what it killed."""
    killed = []
    for line in lines:
        pid = int(line.split(":", 1)[0])
        try:
            handle = os.pidfd_open(pid)
        except OSError:
            continue  # already gone
        try:
            try:
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                os.kill(pid, signal.SIGKILL)
            poller = select.poll()
            poller.register(handle, select.POLLIN)
            poller.poll(10_000)  # readable once the process has exited; bounded
        except OSError:
            pass
        finally:
            os.close(handle)
        killed.append(f"killed {line}")
    return killed


def socket_roots(short_id: str) -> List[Path]:
    """The run's socket directories: ours (owner), real directories (no symlink)."""
    found = []
    for entry in SOCKET_PARENT.glob(socket_prefix(short_id) + "*"):
        try:
            info = entry.lstat()
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid():
            found.append(entry)
    return found


def sweep_names(short_id: str) -> List[str]:
    """Deletes everything named with `short_id`; returns what it found."""
    from vnetct.core.native import vnetct_native
    from vnetct.sut.vf_wire import sweep_host_links

    cleaned = kill_processes(leftover_processes(str(SOCKET_PARENT / socket_prefix(short_id))))
    cleaned += kill_processes(processes_in_namespaces(netns_prefix(short_id)))
    cleaned += [f"deleted namespace {name}" for name in vnetct_native.sweep_netns(netns_prefix(short_id))]
    cleaned += [f"deleted host link {name}" for name in sweep_host_links(f"v{short_id}")]
    for root in socket_roots(short_id):
        shutil.rmtree(root, ignore_errors=True)
        cleaned.append(f"removed {root}")
    return cleaned
