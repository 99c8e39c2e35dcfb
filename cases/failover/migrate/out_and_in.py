"""Failover across a live migration, out and in: the source asks the guest for
the primary, waits until it is released, migrates over the standby, and the
target plugs the primary back for the guest."""

import time

import pytest

from vnetct.failover import MAC, PRIMARY_ID, STANDBY_ID, failover_formed, wait_for_guest
from vnetct.migration import NATIVE_PCIEHP, start_migration
from vnetct.trace import assert_trace_conformant, record_guest_release


def _seconds(later, earlier):
    return round((later - earlier) / 1e9, 3)


@pytest.mark.rule("FO-MIG-SRC-01", "FO-MIG-SRC-02", "FO-MIG-SRC-03", "FO-MIG-TGT-02")
@pytest.mark.parametrize("hotplug", ["acpi", "pciehp"])
def test_unplug_migrate_replug(vm_factory, case, hotplug):
    # acpi: q35's default; pciehp: native PCIe hotplug, whose eject waits for the attention button.
    migration = start_migration(vm_factory, case, f"mig-{hotplug}",
                                extra_args=NATIVE_PCIEHP if hotplug == "pciehp" else [])
    source, target, qmp_mark = migration.source, migration.target, migration.qmp_mark
    primary_name = migration.primary_name
    # Source: the primary is requested, and the migration waits until the guest let it go.
    unplug = source.qmp.wait_event("UNPLUG_PRIMARY", {"device-id": PRIMARY_ID}, qmp_mark, timeout=60)
    wait_unplug = source.qmp.wait_event("MIGRATION", {"status": "wait-unplug"}, qmp_mark, timeout=60)
    active = source.qmp.wait_event("MIGRATION", {"status": "active"}, qmp_mark, timeout=60)
    completed = source.qmp.wait_event("MIGRATION", {"status": "completed"}, qmp_mark, timeout=120)
    record_guest_release(source, PRIMARY_ID, primary_name, migration.agent_mark)
    released = [e for e in source.trace_log if e["kind"] == "guest-released"]
    assert released, f"no evidence that the guest released {primary_name} (agent netdev-removed)"
    assert released[0]["t_ns"] <= active["host_ns"], "the migration went active before the guest released the primary"

    # Target: the primary comes back, the guest re-enslaves it.
    case.step("waiting for the target to resume with the primary")
    resume = target.qmp.wait_event("RESUME", None, 0, timeout=60)
    target.qmp.wait_event("FAILOVER_NEGOTIATED", {"device-id": STANDBY_ID}, 0, timeout=60)
    target.connect_agent()
    netdevs = wait_for_guest(target, failover_formed, "the primary re-enslaved on the target", 60.0)
    formed_ns = time.monotonic_ns()
    back = next(n for n in netdevs if n.get("failover_role") == "primary")
    assert back["mac"] == MAC and back["parent_bus"] == "pci"
    case.save_json("target-netdevs.json", netdevs)

    case.metric("unplug_latency", _seconds(released[0]["t_ns"], unplug["host_ns"]), "s")
    case.metric("wait_unplug_duration", _seconds(active["host_ns"], wait_unplug["host_ns"]), "s")
    case.metric("migration_total", _seconds(completed["host_ns"], unplug["host_ns"]), "s")
    info = source.qmp.execute("query-migrate")
    if "downtime" in info:
        case.metric("qemu_downtime", info["downtime"], "ms")
    case.metric("replug_latency", _seconds(formed_ns, resume["host_ns"]), "s")  # RESUME to primary enslaved
    assert_trace_conformant(case, source)
    assert_trace_conformant(case, target)
