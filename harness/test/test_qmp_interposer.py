"""vnetct_native.QmpInterposer through the binding: a fault plan as a dict, the
action log as dicts, a bad plan as HostError; against a small fake monitor and
against a real QEMU."""

from __future__ import annotations

import json
import shutil
import socket
import threading
from pathlib import Path

import pytest

from vnetct.core import paths
from vnetct.core.native import vnetct_native

GREETING = {"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""},
                    "capabilities": ["oob"]}}


class FakeMonitor:
    """QEMU's QMP monitor, scripted: greets, answers commands from `replies`
    (name -> return value) and sends `events` right after qmp_capabilities.
    Records every command it was sent."""

    def __init__(self, path: Path, replies: dict, events: list[dict]):
        self.commands: list[dict] = []
        self._replies = replies
        self._events = events
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(1)
        self._listener.settimeout(10)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        try:
            connection, _ = self._listener.accept()
        except OSError:
            return
        with connection, connection.makefile("rwb") as stream:
            def send(message):
                stream.write(json.dumps(message).encode() + b"\r\n")
                stream.flush()

            send(GREETING)
            for line in stream:
                command = json.loads(line)
                self.commands.append(command)
                name = command["execute"]
                send({"return": self._replies.get(name, {}), "id": command["id"]})
                if name == "qmp_capabilities":
                    for event in self._events:
                        send({"event": event["event"], "data": event.get("data", {}),
                              "timestamp": {"seconds": 1714560000, "microseconds": 1}})

    def close(self):
        self._listener.close()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive(), "the fake monitor did not end"


@pytest.fixture
def sockets(tmp_path):
    return tmp_path / "qemu.sock", tmp_path / "interposer.sock"


def test_a_plan_acts_on_events_and_replies_and_logs_what_it_did(tmp_path, sockets):
    upstream, listen = sockets
    peripherals = [{"name": "net1", "type": "child<virtio-net-pci>"},
                   {"name": "hostdev0", "type": "child<vfio-pci>"}]
    monitor = FakeMonitor(upstream, {"qom-list": peripherals, "query-status": {"status": "running"}},
                          [{"event": "UNPLUG_PRIMARY", "data": {"device-id": "hostdev0"}},
                           {"event": "MIGRATION", "data": {"status": "wait-unplug"}},
                           {"event": "RESUME"}])
    plan = {"rules": [
        {"name": "lost-unplug", "event": "UNPLUG_PRIMARY", "action": "drop"},
        {"name": "gone", "command": "qom-list", "arguments": {"path": "/machine/peripheral"},
         "action": "edit-reply", "remove": {"name": "hostdev0"}},
        {"name": "unplug-ok", "command": "device_del", "action": "reply", "return": {}},
    ]}
    log_path = tmp_path / "interposer.jsonl"
    interposer = vnetct_native.QmpInterposer.start(str(listen), str(upstream), plan, str(log_path))
    try:
        assert interposer.listen_path == str(listen)
        client = vnetct_native.QmpClient.connect(str(listen), timeout=10)
        client.wait_event("RESUME", timeout=10)
        assert [event["name"] for event in client.events] == ["MIGRATION", "RESUME"]
        assert client.execute("qom-list", {"path": "/machine/peripheral"}, timeout=10) == peripherals[:1]
        assert client.execute("device_del", {"id": "hostdev0"}, timeout=10) == {}
        assert client.execute("query-status", timeout=10) == {"status": "running"}
    finally:
        interposer.stop()
        interposer.stop()
        monitor.close()
    assert [command["execute"] for command in monitor.commands] == ["qmp_capabilities", "qom-list", "query-status"]
    actions = interposer.actions()
    assert [(action["rule"], action["action"]) for action in actions] == [
        ("lost-unplug", "dropped"), ("gone", "edited-reply"), ("unplug-ok", "replied")]
    assert actions[0]["message"]["data"] == {"device-id": "hostdev0"}
    assert actions[1]["message"]["return"] == peripherals[:1]
    assert actions[1]["original"]["return"] == peripherals
    assert all(isinstance(action["host_ns"], int) for action in actions)
    assert [json.loads(line) for line in log_path.read_text().splitlines()] == actions
    assert not listen.exists()


def test_a_bad_plan_is_a_host_error_naming_the_rule_and_field(sockets):
    upstream, listen = sockets
    with pytest.raises(vnetct_native.HostError) as raised:
        vnetct_native.QmpInterposer.start(str(listen), str(upstream), {"rules": [
            {"name": "ok", "event": "STOP", "action": "drop"},
            {"name": "late", "event": "STOP", "action": "delay", "ms": "soon"}]})
    assert raised.value.code == "InvalidArgument"
    assert 'rule 1 ("late"): field "ms": expected a non-negative integer of milliseconds, got "soon"' in str(
        raised.value)
    assert not listen.exists()


def _qemu() -> Path | None:
    found = paths.DEFAULT_QEMU if paths.DEFAULT_QEMU.exists() else shutil.which("qemu-system-x86_64")
    return Path(found) if found else None


@pytest.mark.skipif(_qemu() is None, reason="no qemu-system-x86_64 on this host")
def test_real_qemu_through_the_interposer(tmp_path, sockets):
    upstream, listen = sockets
    argv = [str(_qemu()), "-S", "-display", "none", "-nodefaults", "-machine", "q35",
            "-device", "virtio-rng-pci",  # an anonymous peripheral: /machine/peripheral-anon/device[0]
            "-chardev", f"socket,id=qmp,path={upstream},server=on,wait=off", "-mon", "chardev=qmp,mode=control"]
    plan = {"rules": [{"name": "hide-rng", "command": "qom-list", "arguments": {"path": "/machine/peripheral-anon"},
                       "action": "edit-reply", "remove": {"name": "device[0]"}}]}
    # The interposer first: QEMU's socket appears after it, and is waited for.
    interposer = vnetct_native.QmpInterposer.start(str(listen), str(upstream), plan)
    qemu = vnetct_native.Process.spawn(argv, stderr_path=str(tmp_path / "qemu.stderr"))
    try:
        client = vnetct_native.QmpClient.connect(str(listen), str(tmp_path / "qmp.jsonl"), timeout=30)
        assert client.execute("query-status", timeout=30)["status"] == "prelaunch"
        listed = client.execute("qom-list", {"path": "/machine/peripheral-anon"}, timeout=30)
        assert "device[0]" not in [entry["name"] for entry in listed]
        actions = interposer.actions()
        assert [(action["rule"], action["action"]) for action in actions] == [("hide-rng", "edited-reply")]
        original = [entry["name"] for entry in actions[0]["original"]["return"]]
        assert "device[0]" in original, f"QEMU itself did not list the device: {original}"
        assert actions[0]["removed"] == 1
        client.execute("quit", timeout=30)
        status = qemu.wait(30)
        assert status.code == 0, status.describe()
    finally:
        if qemu.poll() is None:
            qemu.terminate(grace=5.0)
        interposer.stop()
    assert qemu.poll() is not None
