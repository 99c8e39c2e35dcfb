"""One L1 on its wire, from launch to teardown: the wire (a network
namespace `vnetct-<short id>-nested` with a bridge and one TAP per PF,
learning off, made by vnetct_native.Topology), the host agent's socket
directory, L1's QEMU with the TAP queues as fds, and L1's console read line
by line: every marker timed on arrival (host seconds since launch), until
the caller's `done` says so, a failure line, L1's exit or the deadline.
Everything is removed in a `finally`, also when a step fails; what could
not be removed is raised."""

from __future__ import annotations

import os
import re
import secrets
import selectors
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

from vnetct.core import sweep

MARK_RE = re.compile(r"^(?:L2 )?NESTED(-L2)? ([0-9.]+) (\S+)")
# "Initramfs unpacking failed": L1's memory cannot hold its initramfs (files are then cut or holed, sizes intact)
FAILURE_RE = re.compile(r"Kernel panic|Initramfs unpacking failed|^NESTED \S+ failed|agent-exited|l2-exited|"
                        r"qemu-system-x86_64: (?!warning: )")
PEER_ADDRESS = "198.18.0.1/24"


class L1Failed(Exception):
    """L1 or a step inside it failed; the message says which and where the console is."""


@dataclass
class Console:
    """What L1 printed: every line with its host arrival time, and the first arrival of each marker."""
    lines: List[str] = field(default_factory=list)
    marks: Dict[str, dict] = field(default_factory=dict)

    def add(self, now: float, line: str) -> Optional[str]:
        self.lines.append(line)
        match = MARK_RE.match(line)
        if match and match.group(3) not in self.marks:
            self.marks[match.group(3)] = {"host_s": now, "line": line}
            return match.group(3)
        return None

    def mark_line(self, name: str) -> str:
        return self.marks[name]["line"]


@dataclass
class L1Result:
    console: Console
    failure: Optional[str]
    wire: dict   # what the wire was (netns, bridge, taps) and whether it was removed


def new_short_id() -> str:
    return secrets.token_hex(3)


def run_l1(argv_for: Callable[[List[int], Path], List[str]], out: Path, timeout: float,
           done: Callable[[Console], bool], pfs: int, short_id: Optional[str] = None,
           log: Callable[[str], None] = print) -> L1Result:
    """Creates the wire, starts L1 (`argv_for(tap_fds, host_agent_socket)`), reads its console into
    out/l1-console.log until `done(console)` is true (it may raise to fail the run), and tears everything
    down. The failure is a console line, L1's exit or the deadline, with what was awaited."""
    from vnetct.core.native import vnetct_native

    short_id = short_id or new_short_id()
    netns = f"{sweep.netns_prefix(short_id)}-nested"
    out.mkdir(parents=True, exist_ok=True)
    console = Console()
    wire = vnetct_native.Topology.create(netns=netns, device_prefix=f"v{short_id}n", taps=pfs,
                                         peer_address=PEER_ADDRESS)
    sockets = sweep.make_socket_root(short_id)
    fds: List[int] = []
    failure: Optional[str] = None
    described = {"netns": wire.netns, "bridge": wire.bridge, "taps": list(wire.taps)}
    try:
        fds = [vnetct_native.open_tap_in_netns(wire.netns, tap) for tap in wire.taps]
        argv = argv_for(fds, sockets / "host-agent.sock")
        (out / "l1-argv.txt").write_text(" ".join(argv) + "\n")
        failure = _read_console(argv, fds, out, timeout, done, console, log)
    finally:
        for fd in fds:
            os.close(fd)
        shutil.rmtree(sockets, ignore_errors=True)
        wire.destroy()
        described["removed"] = netns not in vnetct_native.list_netns(netns)
        if not described["removed"]:
            raise L1Failed(f"the wire's namespace {netns} is still there after its removal")
    return L1Result(console, failure, described)


def _read_console(argv: List[str], fds: List[int], out: Path, timeout: float, done, console: Console,
                  log) -> Optional[str]:
    launched = time.monotonic()
    console.marks["launch"] = {"host_s": 0.0, "line": ""}
    failure: Optional[str] = None
    with open(out / "l1-console.log", "w", buffering=1) as record, open(out / "l1-qemu.stderr", "w") as stderr, \
            subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                             pass_fds=fds, process_group=0) as l1:
        selector = selectors.DefaultSelector()
        selector.register(l1.stdout, selectors.EVENT_READ)
        pending = b""
        try:
            while failure is None:
                left = launched + timeout - time.monotonic()
                if left <= 0:
                    failure = f"timed out after {timeout:.0f} s; last marker: {_last_mark(console)}"
                    break
                if not selector.select(left):
                    continue
                chunk = os.read(l1.stdout.fileno(), 65536)
                if not chunk:
                    failure = f"L1 exited (status {l1.wait()}); last marker: {_last_mark(console)}"
                    break
                now = round(time.monotonic() - launched, 2)
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    line = raw.decode(errors="replace").rstrip("\r")
                    record.write(f"{now:8.2f} {line}\n")
                    if console.add(now, line):
                        log(f"[{now:7.2f} s] {line[:160]}")
                    if failure is None and FAILURE_RE.search(line):
                        failure = line
                if failure is None and done(console):
                    console.marks["done"] = {"host_s": now, "line": ""}
                    break
        except Exception as error:  # a judgement of `done` that failed: L1 goes down all the same
            failure = f"{type(error).__name__}: {error}"
        finally:
            if l1.poll() is None:
                os.killpg(l1.pid, 9)
            l1.wait()
    return failure


def _last_mark(console: Console) -> str:
    named = [(mark["host_s"], name) for name, mark in console.marks.items() if name not in ("launch",)]
    return max(named)[1] if named else "none (L1 printed no marker)"
