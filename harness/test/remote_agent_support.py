"""What the host agent daemon's tests share: the daemon binary, a daemon on a
socketpair, and the relay checks (each raises AssertionError naming what
differed, so that a seeded fault can show they fail)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator, Tuple

import pytest

from vnetct.core import paths
from vnetct.remote.client import RemoteAgentClient

AGENT = paths.BUILD / "host_agent" / "remote" / "vnetct-host-agent"


def agent_binary() -> Path:
    if not AGENT.is_file():
        pytest.fail(f"{AGENT} is not built (cmake --build build --target vnetct-host-agent)")
    return AGENT


@contextlib.contextmanager
def local_agent(out: Path) -> Iterator[Tuple[RemoteAgentClient, subprocess.Popen]]:
    """The daemon on this host with --stdio on one end of a socketpair, the client on the other."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with open(out / "agent.stderr", "w") as stderr:
        process = subprocess.Popen([str(agent_binary()), "--stdio"], stdin=theirs, stdout=theirs, stderr=stderr,
                                   process_group=0)
    theirs.close()
    client = RemoteAgentClient(ours, transcript=out / "remote.jsonl")
    try:
        yield client, process
    finally:
        client.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise AssertionError("the agent did not end at the end of its input")


def echo_server(path: Path) -> threading.Thread:
    """A unix socket at `path` that echoes one connection's bytes (standing for a socket in L1)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def serve() -> None:
        connection, _ = listener.accept()
        listener.close()
        with connection:
            while True:
                data = connection.recv(1 << 16)
                if not data:
                    return
                connection.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def relay_round_trip(path: Path, payload: bytes, timeout: float = 60.0) -> float:
    """Sends `payload` into the L0 socket `path` (an echo behind it) and reads it back: the seconds it took.
    AssertionError naming the first differing offset."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        started = time.monotonic()
        writer = threading.Thread(target=sock.sendall, args=(payload,), daemon=True)
        writer.start()
        received = bytearray()
        while len(received) < len(payload):
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            received += chunk
        elapsed = time.monotonic() - started
        writer.join(timeout)
    if bytes(received) != payload:
        offset = next((i for i, (a, b) in enumerate(zip(received, payload)) if a != b), min(len(received), len(payload)))
        raise AssertionError(f"the relay gave back {len(received)} of {len(payload)} bytes, differing from offset "
                             f"{offset}")
    return elapsed


def median_of(values) -> float:
    return round(statistics.median(values), 6)
