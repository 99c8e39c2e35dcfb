"""The seeded host faults (vnetct.faults): the QMP interposer against a fake
QEMU monitor, through the harness's own QMP client; plan errors; argv
rewriting; and the quick subset of `./vnetct selftest` on real QEMU, where
each fault must make a case fail naming its rule."""

import json
import os
import socket
import subprocess
import threading

import pytest

from vnetct.core import paths
from vnetct.core.native import vnetct_native
from vnetct.faults.catalog import FAULTS, STANDBY_ID
from vnetct.faults.qmp_interposer import PlanError, QmpInterposer, validate


class FakeMonitor:
    """A QMP server: greeting, replies to every command (query-migrate and
    qom-list with canned values), and the events the test queues."""

    def __init__(self, path):
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        self.events_after_caps = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        conn, _ = self.server.accept()
        stream = conn.makefile("rwb")

        def send(message):
            stream.write((json.dumps(message) + "\r\n").encode())
            stream.flush()
        send({"QMP": {"version": {"qemu": {"major": 10, "minor": 0, "micro": 2}}, "capabilities": []}})
        for line in stream:
            command = json.loads(line)
            name, ident = command["execute"], command.get("id")
            value = {}
            if name == "query-migrate":
                value = {"status": "wait-unplug"}
            elif name == "qom-list":
                value = [{"name": "net1", "type": "child<virtio-net-pci>"},
                         {"name": "hostdev0", "type": "child<e1000e>"}]
            elif name == "emit":
                for event in command["arguments"]["events"]:
                    send({"event": event[0], "data": event[1], "timestamp": {"seconds": 1, "microseconds": 0}})
            send({"return": value, "id": ident})
        conn.close()


@pytest.fixture
def through(tmp_path):
    """(plan) -> a QmpClient connected through an interposer to a fake monitor."""
    made = []

    def connect(plan):
        FakeMonitor(tmp_path / "qemu.sock")
        interposer = QmpInterposer(str(tmp_path / "qmp.sock"), str(tmp_path / "qemu.sock"), plan,
                                   str(tmp_path / "fault.jsonl"))
        made.append(interposer)
        client = vnetct_native.QmpClient.connect(str(tmp_path / "qmp.sock"), "", timeout=5.0)
        return client, interposer
    yield connect
    for interposer in made:
        interposer.stop()


def _emit(client, *events):
    client.execute("emit", {"events": [list(event) for event in events]})
    client.pump(0.2)
    return [(e["name"], e["data"]) for e in client.events]


def test_an_empty_plan_passes_everything_through(through):
    client, interposer = through({"rules": []})
    assert _emit(client, ("UNPLUG_PRIMARY", {"device-id": "hostdev0"})) == [("UNPLUG_PRIMARY",
                                                                             {"device-id": "hostdev0"})]
    assert client.execute("query-migrate") == {"status": "wait-unplug"}
    assert interposer.actions == []


def test_drop_an_event_and_forge_after_a_trigger(through):
    client, interposer = through({"rules": [
        {"name": "drop", "event": "UNPLUG_PRIMARY", "action": "drop"},
        {"name": "forge", "event": "MIGRATION", "data": {"status": "wait-unplug"}, "action": "forge",
         "forge": [{"event": "MIGRATION", "data": {"status": "active"}}], "count": 1}]})
    seen = _emit(client, ("UNPLUG_PRIMARY", {"device-id": "hostdev0"}), ("MIGRATION", {"status": "wait-unplug"}),
                 ("MIGRATION", {"status": "wait-unplug"}))
    assert seen == [("MIGRATION", {"status": "wait-unplug"}), ("MIGRATION", {"status": "active"}),
                    ("MIGRATION", {"status": "wait-unplug"})]
    assert [a["action"] for a in interposer.actions] == ["dropped", "forged"]


def test_edit_a_reply_while_armed_and_forge_on_connect(through):
    client, _ = through({"rules": [
        {"name": "hide", "command": "qom-list", "action": "edit-reply", "remove": {"name": "hostdev0"}},
        {"name": "active", "command": "query-migrate", "action": "edit-reply", "set": {"status": "active"},
         "armed_by": {"event": "MIGRATION", "data": {"status": "wait-unplug"}}},
        {"name": "early", "on_connect": True, "action": "forge",
         "forge": [{"event": "FAILOVER_NEGOTIATED", "data": {"device-id": STANDBY_ID}}]}]})
    client.pump(0.2)
    assert [e["name"] for e in client.events] == ["FAILOVER_NEGOTIATED"]
    assert client.execute("qom-list", {"path": "/machine/peripheral"}) == [
        {"name": "net1", "type": "child<virtio-net-pci>"}]
    assert client.execute("query-migrate") == {"status": "wait-unplug"}  # not armed yet
    _emit(client, ("MIGRATION", {"status": "wait-unplug"}))
    assert client.execute("query-migrate") == {"status": "active"}


@pytest.mark.parametrize("plan, message", [
    ({"rules": [{"name": "x", "event": "A", "command": "b", "action": "drop"}]}, "exactly one trigger"),
    ({"rules": [{"name": "x", "event": "A", "action": "explode"}]}, "field 'action'"),
    ({"rules": [{"name": "x", "command": "q", "action": "drop"}]}, "drop needs an event trigger"),
    ({"rules": [{"name": "x", "event": "A", "action": "drop", "colour": 1}]}, "unknown field(s) ['colour']"),
    ({"rules": "no"}, "a list 'rules'")])
def test_a_bad_plan_names_the_rule_and_the_field(plan, message):
    with pytest.raises(PlanError, match=None) as error:
        validate(plan)
    assert message in str(error.value)


def test_argv_rewriting_touches_only_the_named_property():
    rewrite = FAULTS["standby-failover-off"].argv
    argv = ["qemu", "-device", "virtio-net-pci,netdev=hn0,id=net1,failover=on", "-device", "e1000e,failover=on"]
    assert rewrite(argv) == ["qemu", "-device", "virtio-net-pci,netdev=hn0,id=net1,failover=off", "-device",
                             "e1000e,failover=on"]


def test_the_catalog_names_the_failover_cases_devices():
    from vnetct.failover.guest import STANDBY_ID as CASES_STANDBY
    assert STANDBY_ID == CASES_STANDBY


@pytest.mark.skipif(os.geteuid() != 0, reason="real QEMU runs need root (namespaces, TAPs)")
def test_the_quick_selftest_catches_each_fault_with_its_rule(tmp_path):
    """./vnetct selftest --quick on real QEMU: the baseline passes, and each
    quick fault makes a case fail naming its rule within the time bound."""
    result = subprocess.run([str(paths.REPO / "vnetct"), "selftest", "--quick", "--no-setup", "--out",
                             str(tmp_path)], capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = json.loads(next(tmp_path.glob("selftest-*/selftest.json")).read_text())
    assert [fault["fault"] for fault in summary["faults"]] == [f.name for f in FAULTS.values() if f.quick]
    for fault in summary["faults"]:
        assert fault["ok"] and fault["caught"] >= 1, fault
        named = [case for case in fault["cases"] if fault["rule"] in (case["violated_rules"] or [])]
        assert all(case["beyond_normal_s"] is None or case["beyond_normal_s"] <= 15 for case in named), fault
