"""A migration without failover: with failover=off nothing is hidden and
nothing is negotiated, so the source never asks the guest for a primary,
whether the migration completes or is cancelled."""

import pytest

from vnetct.failover.guest import PRIMARY_DRIVERS, PRIMARY_ID, STANDBY_ID, failover_spec, wait_for_guest
from vnetct.failover.hotplug import (boot, cancel_without_primary, e1000e_netdevs, events_named, hot_plug,
                                     load_standby_driver, netdevs_brief)
from vnetct.failover.migration import EVENTS_ON
from vnetct.failover.trace import VIRTIO_NET_F_STANDBY

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


@pytest.mark.rule("FO-CFG-05", "FO-CFG-08", "FO-MIG-SRC-01")
def test_cancelled_with_failover_off_keeps_both_nics(vm_factory, case):
    """Counterpart of QEMU's qtest failover-virtio-net/migrate/off/abort: a
    failover=off standby device_add'ed, its driver started (no bit 62), then a
    primary naming it device_add'ed (visible at once); a migration reaches
    active and is cancelled; both NICs stay on the bus. The qtest plays the
    driver and judges query-pci and the migration status; here a real guest
    binds both NICs as ordinary netdevs, and the case judges that the host
    never asked it for the primary (no UNPLUG_PRIMARY, no wait-unplug) and
    that the guest kept its e1000e through the migration and the cancel."""
    vm = boot(vm_factory, failover_spec("plain-cancel", standby_failover="off", hot_plugged=True))
    case.uses(vm)
    hot_plug(vm, STANDBY_ID)
    case.step("loading virtio_net: a failover=off standby offers no bit 62")
    load_standby_driver(vm)
    netdevs = wait_for_guest(vm, lambda netdevs: any(n.get("driver") == "virtio_net" for n in netdevs),
                             "virtio_net bound to the hot-plugged standby", 60.0)
    standby = next(n for n in netdevs if n.get("driver") == "virtio_net")
    assert VIRTIO_NET_F_STANDBY not in (standby["virtio_feature_bits"] or []), \
        f"FO-CFG-05: the guest acked bit 62 on a failover=off standby: {standby['virtio_feature_bits']}"

    vm.load_drivers(PRIMARY_DRIVERS)
    agent_mark = len(vm.agent.events)
    hot_plug(vm, PRIMARY_ID)
    assert PRIMARY_ID in vm.pci_ids(), "FO-CFG-08: a primary naming a failover=off standby was hidden"
    netdevs = wait_for_guest(vm, lambda netdevs: bool(e1000e_netdevs(netdevs)), "the primary as a plain e1000e",
                             60.0, agent_mark)
    primary_name = e1000e_netdevs(netdevs)[0]["name"]
    assert not events_named(vm, "FAILOVER_NEGOTIATED", 0), "FO-CFG-05: FAILOVER_NEGOTIATED with failover=off"
    assert not [n for n in netdevs if n.get("failover_role")], \
        f"FO-CFG-05: a failover master formed with failover=off: {netdevs_brief(netdevs)}"

    agent_mark = len(vm.agent.events)
    cancel_without_primary(vm_factory, vm, case, "a failover=off pair")
    pci = vm.pci_ids()
    assert STANDBY_ID in pci and PRIMARY_ID in pci, \
        f"FO-MIG-SRC-01: a NIC of the failover=off pair left the bus with the migration and its cancel: {pci}"
    vm.agent.pump(0.05)
    removed = [e for e in vm.agent.events[agent_mark:]
               if e["name"] == "netdev-removed" and e["data"].get("name") == primary_name]
    netdevs = vm.report()
    case.save_json("guest-netdevs-after-cancel.json", netdevs)
    assert not removed and e1000e_netdevs(netdevs), \
        f"FO-MIG-SRC-01: the guest lost its plain e1000e {primary_name} to the migration: {netdevs_brief(netdevs)}"
