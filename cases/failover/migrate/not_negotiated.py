"""A failover pair whose guest never negotiated: its virtio driver cannot ack
VIRTIO_NET_F_STANDBY (bit 62), so the primary was never plugged. Migrating
such a guest asks for no release (no UNPLUG_PRIMARY, no wait-unplug), and the
target keeps the primary hidden too: the guest goes on with its standby
alone; a cancelled migration leaves it hidden too."""

import pytest

from vnetct.core.verdict import absent_event, require
from vnetct.failover.trace import VIRTIO_NET_F_STANDBY
from vnetct.failover.guest import (NEGOTIATED_BOUND_S, PRIMARY_DRIVERS, PRIMARY_ID, STANDBY_DRIVERS, STANDBY_ID,
                                   failover_spec)
from vnetct.failover.hotplug import boot, cancel_without_primary, events_named, hot_plug, load_standby_driver
from vnetct.failover.migration import EVENTS_ON, REPLUG_BOUND_S


def _virtio_netdevs(netdevs):
    return [n for n in netdevs if n.get("driver") == "virtio_net"]


@pytest.mark.rule("FO-NEG-03", "FO-MIG-SRC-01", "FO-MIG-TGT-02")
def test_migrates_without_unplug(vm_factory, case):
    # A transitional standby driven through the legacy interface: 32 feature bits only.
    source = vm_factory.migration_source(failover_spec("nonneg-source", legacy_guest_driver=True))
    source.step("loading e1000e, then virtio_net (which cannot ack bit 62)")
    source.load_drivers(PRIMARY_DRIVERS)
    source.load_drivers(STANDBY_DRIVERS)
    netdevs = source.report()
    standby = _virtio_netdevs(netdevs)
    assert standby and VIRTIO_NET_F_STANDBY not in (standby[0]["virtio_feature_bits"] or []), \
        f"the guest acked bit 62: the premise (a guest that cannot negotiate) does not hold: {standby}"
    # Absence after a stated settle window from the guest's (non-)ack: the host's reaction would come
    # within NEGOTIATED_BOUND_S of the feature write, as a negotiating standby's does.
    absent_event(source, "FAILOVER_NEGOTIATED", None, 0, "FO-NEG-03", NEGOTIATED_BOUND_S,
                 "the guest never acked VIRTIO_NET_F_STANDBY")
    require(PRIMARY_ID not in source.pci_ids(), "FO-NEG-03",
            "the primary was plugged although the guest never acked STANDBY")

    target = vm_factory.start_target(source, "nonneg-target")
    case.uses(source, target)
    source.qmp.execute("migrate-set-capabilities", EVENTS_ON)
    mark = len(source.qmp.events)
    case.step("migrating nonneg-source to nonneg-target")
    source.record("migrate")
    source.qmp.execute("migrate", {"uri": target.migration_uri})
    source.qmp.wait_event("MIGRATION", {"status": "completed"}, mark, timeout=120)
    seen = source.qmp.events[mark:]
    statuses = [e["data"]["status"] for e in seen if e["name"] == "MIGRATION"]
    case.save_json("source-statuses.json", statuses)
    # FO-MIG-SRC-01: no negotiated primary, nothing to ask the guest for.
    require(not [e for e in seen if e["name"] == "UNPLUG_PRIMARY"], "FO-MIG-SRC-01",
            "UNPLUG_PRIMARY for a primary never negotiated")
    require("wait-unplug" not in statuses, "FO-MIG-SRC-02", f"wait-unplug without a primary to release: {statuses}")

    # FO-MIG-TGT-02: the loaded guest never acked bit 62, so the target plugs nothing.
    target.qmp.wait_event("RESUME", None, 0, timeout=60)
    absent_event(target, "FAILOVER_NEGOTIATED", None, 0, "FO-MIG-TGT-02", REPLUG_BOUND_S,
                 "the loaded guest never acked VIRTIO_NET_F_STANDBY")
    require(PRIMARY_ID not in target.pci_ids(), "FO-MIG-TGT-02",
            "the target plugged the primary for a guest that never acked STANDBY")
    netdevs = target.report()
    case.save_json("target-netdevs.json", netdevs)
    assert _virtio_netdevs(netdevs), f"the guest lost its standby across the migration: {netdevs}"
    assert not [n for n in netdevs if n.get("driver") == "e1000e" or n.get("failover_role")], \
        f"the guest got a primary or a failover master on the target: {netdevs}"


@pytest.mark.rule("FO-NEG-01", "FO-NEG-03", "FO-MIG-SRC-01")
def test_cancelled_keeps_primary_hidden(vm_factory, case):
    """Counterpart of QEMU's qtest failover-virtio-net/migrate/guest_off/abort:
    a failover=on standby and its primary device_add'ed, the standby's driver
    started without acking bit 62; the primary stays hidden; a migration
    reaches active and is cancelled; the primary is still hidden after it.
    The qtest masks the feature in its own driver; here a real guest drives a
    transitional standby through the legacy interface (32 feature bits), and
    the case also judges that the host never asked for the primary
    (no UNPLUG_PRIMARY, no wait-unplug) and that the guest never got it."""
    vm = boot(vm_factory, failover_spec("nonneg-cancel", legacy_guest_driver=True, hot_plugged=True))
    case.uses(vm)
    vm.load_drivers(PRIMARY_DRIVERS)
    hot_plug(vm, STANDBY_ID)
    hot_plug(vm, PRIMARY_ID)
    assert PRIMARY_ID not in vm.pci_ids(), "FO-NEG-01: the hot-plugged primary is on the bus before any ack"

    case.step("loading virtio_net (which cannot ack bit 62 through the legacy interface)")
    load_standby_driver(vm)
    standby = _virtio_netdevs(vm.report())
    assert standby and VIRTIO_NET_F_STANDBY not in (standby[0]["virtio_feature_bits"] or []), \
        f"the guest acked bit 62: the premise (a guest that cannot negotiate) does not hold: {standby}"
    assert PRIMARY_ID not in vm.pci_ids(), "FO-NEG-03: the primary was plugged although the guest never acked STANDBY"

    cancel_without_primary(vm_factory, vm, case, "a guest that never negotiated")
    pci = vm.pci_ids()
    case.save_json("pci-after-cancel.json", pci)
    assert STANDBY_ID in pci, f"the standby left the bus with the migration and its cancel (premise): {pci}"
    assert PRIMARY_ID not in pci, f"FO-NEG-03: the primary was plugged by the cancel, never negotiated: {pci}"
    assert not events_named(vm, "FAILOVER_NEGOTIATED", 0), \
        "FO-NEG-03: FAILOVER_NEGOTIATED although the guest never acked STANDBY"
    netdevs = vm.report()
    case.save_json("guest-netdevs-after-cancel.json", netdevs)
    assert not [n for n in netdevs if n.get("driver") == "e1000e" or n.get("failover_role")], \
        f"FO-NEG-03: the guest got a primary or a failover master: {netdevs}"
