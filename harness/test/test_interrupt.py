"""A long wait in the native clients gives way to Ctrl-C at once."""

import os
import signal
import socket
import threading
import time

import pytest

from vnetct.core.native import HostTimeout, vnetct_native


@pytest.fixture
def silent_agent(tmp_path):
    path = tmp_path / "agent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    client = vnetct_native.GuestAgentClient.connect(str(path), "", timeout=5.0)
    peer, _ = server.accept()
    yield client
    peer.close()
    server.close()


@pytest.fixture
def ctrl_c_raises():
    """Python's own SIGINT handler, as in a terminal: a process started in the
    background by a non-interactive shell inherits SIGINT ignored, and Python
    then installs none (a CI job launched that way would otherwise see the
    signal vanish, not a wait that ignores it)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_interrupts_a_long_wait(silent_agent, ctrl_c_raises):
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    started = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        silent_agent.wait_hello(timeout=30.0)
    assert time.monotonic() - started < 2.0


def test_timeout_message_gives_the_whole_wait(silent_agent):
    with pytest.raises(HostTimeout, match="waited 0.5 s in total"):
        silent_agent.wait_hello(timeout=0.5)
