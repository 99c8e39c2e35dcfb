"""A migration without failover: with failover=off nothing is hidden and
nothing is negotiated, so the source never asks the guest for a primary."""

import pytest

from vnetct.failover.guest import PRIMARY_ID, failover_spec
from vnetct.failover.migration import EVENTS_ON

UNPLUG_STATES = ("wait-unplug",)


@pytest.mark.rule("FO-CFG-05", "FO-MIG-SRC-01")
def test_failover_off_migrates_without_unplug(vm_factory, case):
    source = vm_factory.migration_source(failover_spec("plain-source", standby_failover="off"))
    source.load_drivers()
    source.report()
    target = vm_factory.start_target(source, "plain-target")
    case.uses(source, target)
    source.qmp.execute("migrate-set-capabilities", EVENTS_ON)
    mark = len(source.qmp.events)
    source.record("migrate")
    source.qmp.execute("migrate", {"uri": target.migration_uri})
    source.qmp.wait_event("MIGRATION", {"status": "completed"}, mark, timeout=120)
    seen = source.qmp.events[mark:]
    assert not [e for e in seen if e["name"] == "UNPLUG_PRIMARY"], "UNPLUG_PRIMARY without a negotiated primary"
    statuses = [e["data"]["status"] for e in seen if e["name"] == "MIGRATION"]
    assert "wait-unplug" not in statuses, f"wait-unplug without a primary to release: {statuses}"
    target.qmp.wait_event("RESUME", None, 0, timeout=60)
    netdevs = target.report()
    assert [n for n in netdevs if n.get("driver") == "e1000e"], "the e1000e did not come across as a plain NIC"
    assert PRIMARY_ID in target.pci_ids()
    case.save_json("target-netdevs.json", netdevs)
