"""The host agent daemon (host_agent/remote) and its L0 client
(vnetct.remote), with no VM: the daemon runs here on a socketpair. Each
request the harness needs, a relay carrying arbitrary bytes and the
harness's own QMP client through a relay, waits that raise naming the request
and the time, and a seeded fault that the relay check catches."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading

import pytest

from remote_agent_support import echo_server, local_agent, relay_round_trip
from vnetct.core import paths
from vnetct.remote.client import Channel, RemoteError, RemoteTimeout
from vnetct.remote.relay import LocalRelay


@pytest.fixture
def agent(tmp_path):
    with local_agent(tmp_path) as (client, process):
        yield client


def test_the_agent_greets_and_says_who_it_is(agent):
    greeting = agent.wait_event("hello", timeout=10)
    hello = agent.hello()
    assert greeting["agent"] == hello["agent"] == "vnetct-host-agent"
    assert hello["protocol"] == 1
    assert hello["kernel"] == os.uname().release
    assert isinstance(hello["pfs"], list)


def test_a_spawned_process_streams_its_output_and_its_exit_is_reported(agent, tmp_path):
    spawned = agent.spawn(["sh", "-c", "printf 'a\\0b'; echo oops >&2; exit 4"], stdout="stream",
                          stderr=str(tmp_path / "err.log"), env={"VNETCT_REMOTE": "1"})
    assert spawned["stdout"].read_all(timeout=10) == b"a\0b"
    assert agent.wait(spawned["process"], timeout=10)["code"] == 4
    assert agent.read_file(str(tmp_path / "err.log")) == b"oops\n"
    assert agent.wait_event("exited", {"process": spawned["process"]}, timeout=5)["code"] == 4


def test_a_killed_process_is_reported_killed_and_a_wait_past_its_time_fails(agent):
    spawned = agent.spawn(["sleep", "100"])
    with pytest.raises(RemoteError) as still_running:
        agent.wait(spawned["process"], timeout=0.3)
    assert still_running.value.code == "Timeout" and "still running after 0.3" in still_running.value.message
    agent.signal(spawned["process"], "KILL")
    ended = agent.wait(spawned["process"], timeout=10)
    assert (ended["signal"], ended["code"]) == (9, 0)


def test_files_cross_byte_for_byte_in_several_pieces(agent, tmp_path):
    payload = os.urandom(2 * 1024 * 1024 + 12345)  # three pieces of FILE_CHUNK
    assert agent.write_file(str(tmp_path / "blob"), payload, mode=0o600) == len(payload)
    assert (tmp_path / "blob").read_bytes() == payload
    assert agent.read_file(str(tmp_path / "blob")) == payload
    with pytest.raises(RemoteError) as missing:
        agent.read_file(str(tmp_path / "absent"))
    assert missing.value.code == "FileFailed" and "No such file" in missing.value.message


def test_a_relay_carries_arbitrary_bytes_both_ways(agent, tmp_path):
    agent.hello()
    echo_server(tmp_path / "l1.sock")
    with LocalRelay(agent, str(tmp_path / "l1.sock"), tmp_path / "l0.sock") as relay:
        relay_round_trip(relay.path, bytes(range(256)) * 4096 + os.urandom(100_001))  # 1.1 MB, all byte values
        assert relay.error is None


def test_what_l1_sends_before_the_consumer_attaches_reaches_it_first(agent, tmp_path):
    """A QMP socket greets at once: its greeting must not be lost while the L0 end is being set up."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "greeter.sock"))
    listener.listen(1)
    accepted = []
    greeter = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    greeter.start()
    channel = agent.open_relay(str(tmp_path / "greeter.sock"))
    greeter.join(10)
    accepted[0].sendall(b"GREETING\n")
    with channel._cond:  # the greeting is here before anyone consumes it
        assert channel._cond.wait_for(lambda: len(channel._received) == 9, timeout=10)
    delivered = []
    channel.attach(delivered.append)
    assert delivered == [b"GREETING\n"]
    accepted[0].sendall(b"more")
    with channel._cond:
        assert channel._cond.wait_for(lambda: len(delivered) == 2, timeout=10)
    assert delivered[1] == b"more"
    channel.ack(13)
    channel.close()
    accepted[0].close()
    listener.close()


def test_the_relay_check_catches_a_relay_that_corrupts_a_byte(agent, tmp_path, monkeypatch):
    """Seeded fault: the L0 end flips one bit of the first frame from L1; the check must name the offset."""
    original = Channel._data
    flipped = []

    def corrupting(self, data: bytes) -> None:
        if not flipped:
            flipped.append(True)
            data = bytes([data[0] ^ 1]) + data[1:]
        original(self, data)

    monkeypatch.setattr(Channel, "_data", corrupting)
    agent.hello()
    echo_server(tmp_path / "l1.sock")
    with LocalRelay(agent, str(tmp_path / "l1.sock"), tmp_path / "l0.sock") as relay:
        with pytest.raises(AssertionError, match="differing from offset 0"):
            relay_round_trip(relay.path, bytes(range(256)) * 64)


def test_the_harness_qmp_client_talks_to_a_qemu_through_a_relay(agent, tmp_path):
    from vnetct.core.native import vnetct_native
    qmp_socket = tmp_path / "qmp.sock"
    qemu = agent.spawn([str(paths.DEFAULT_QEMU), "-machine", "none", "-nodefaults", "-display", "none",
                        "-qmp", f"unix:{qmp_socket},server=on,wait=off"], stderr=str(tmp_path / "qemu.stderr"))
    with LocalRelay(agent, str(qmp_socket), tmp_path / "l0-qmp.sock", timeout=30) as relay:
        qmp = vnetct_native.QmpClient.connect(str(relay.path), str(tmp_path / "qmp.jsonl"), 30.0)
        version = qmp.execute("query-version", None, 10.0)
        expected = subprocess.run([str(paths.DEFAULT_QEMU), "--version"], capture_output=True, text=True).stdout
        assert f"{version['qemu']['major']}.{version['qemu']['minor']}.{version['qemu']['micro']}" in expected
        qmp.execute("quit", None, 10.0)
    assert agent.wait(qemu["process"], timeout=30)["code"] == 0


def test_a_request_without_an_answer_raises_naming_it_and_the_time(tmp_path):
    with local_agent(tmp_path) as (client, process):
        client.hello()
        os.kill(process.pid, signal.SIGSTOP)
        try:
            with pytest.raises(RemoteTimeout, match=r"hello: Timeout: no reply to request \d+ within 0.5 s"):
                client.hello(timeout=0.5)
        finally:
            os.kill(process.pid, signal.SIGCONT)
        client.hello()  # the late reply to the request that gave up is dropped, the next is answered


def test_bad_lines_get_error_replies_and_the_agent_reads_on(agent):
    agent.hello()
    agent.sock.sendall(b"{not json\n" + b"{\"id\": 1, \"op\": \"" + b"x" * (5 << 20) + b"\"}\n")
    assert agent.hello()["ok"]
    errors = [message["error"]["code"] for message in agent.events if message.get("ok") is False]
    assert errors == ["Malformed", "Oversized"]
    with pytest.raises(RemoteError, match="UnknownRequest"):
        agent.request("format-disk")
