"""A failover migration that ends on the source before it could complete:
cancelled while the source still waits for the guest to release the primary
(wait-unplug), or failed because the target died while the state was on its
way. Either way the source plugs the primary back and the guest re-enslaves
it.

Native PCIe hotplug (pciehp) makes the wait-unplug window wide enough to
cancel in: the guest's pciehp acts on the attention button only 5 s after the
press, and a press cannot be withdrawn by the host (QEMU has no "press again"
on cancel), so the guest still ejects the primary after the cancel. QEMU 10
therefore sits in "cancelling" until that eject (the guest's pciehp writes
the slot's power indicator off 1 s after powering the slot off: that write is
the release), then cancels and plugs the primary back, which the guest sees
at once (presence and link up; the 5 s timer of the press that comes with the
plug is overtaken)."""

import os
import signal
import time

import pytest

from vnetct.core.verdict import Due, require
from vnetct.failover.guest import (MAC, PRIMARY_ID, REPLUG_SEEN_S, REPLUG_SEEN_SOURCE, failover_formed,
                                   wait_for_guest_due)
from vnetct.failover.migration import NATIVE_PCIEHP, migration_statuses, reap_failed_target, start_migration
from vnetct.failover.trace import record_guest_release
from vnetct.traffic.echo import assert_carried_by

SLOW = {"max-bandwidth": 1 << 20}  # 1 MiB/s: a 512 MiB guest is still on its way when the target dies
# QEMU 10 waits at most 30 s (120 x 250 ms) in cancelling for a guest's pending eject.
CANCELLING_BOUND = 60.0


def _seconds(later_ns, earlier_ns):
    return round((later_ns - earlier_ns) / 1e9, 3)


def _event_log(vm, from_index, origin_ns, client="qmp"):
    """Events since `from_index`, timed from `origin_ns`: the evidence a case saves."""
    events = (vm.qmp if client == "qmp" else vm.agent).events[from_index:]
    return [{"t_s": _seconds(e["host_ns"], origin_ns), "name": e["name"], "data": e["data"]} for e in events]


def _guest_hotplug_log(vm):
    return [line for line in vm.request("kernel-log")["lines"] if "pciehp" in line or "e1000e" in line]


def _reenslaved_ns(vm, netdevs, from_index):
    """When the primary came back enslaved: the arrival of the agent's last
    netdev-added/-changed for it with a master (wait_for_guest notices a
    netdev-added only on its next re-read)."""
    name = next(n["name"] for n in netdevs if n.get("failover_role") == "primary")
    vm.agent.pump(0.05)
    back = [e for e in vm.agent.events[from_index:] if e["name"] in ("netdev-added", "netdev-changed") and
            e["data"].get("name") == name and e["data"].get("master")]
    return back[-1]["host_ns"] if back else time.monotonic_ns()


def _primary_released(vm, primary_name, from_index):
    vm.agent.pump(0.05)
    return next((e for e in vm.agent.events[from_index:]
                 if e["name"] == "netdev-removed" and e["data"].get("name") == primary_name), None)


@pytest.mark.long("native PCIe hotplug's eject waits 5 s for the attention button")
@pytest.mark.rule("FO-MIG-SRC-04", "FO-MIG-SRC-05", "FO-DATA-01")
@pytest.mark.needs("slow-eject")
def test_wait_unplug(vm_factory, case):
    migration = start_migration(vm_factory, case, "abort-wu", extra_args=NATIVE_PCIEHP)
    source, target, qmp_mark = migration.source, migration.target, migration.qmp_mark
    primary_name, agent_mark = migration.primary_name, migration.agent_mark
    unplug, = migration.expect_source(f"UNPLUG_PRIMARY {PRIMARY_ID}", due=migration.after_migrate("FO-MIG-SRC-01"))
    wait_unplug, = migration.expect_source("MIGRATION wait-unplug", due=migration.after_migrate("FO-MIG-SRC-02"))
    assert _primary_released(source, primary_name, agent_mark) is None, \
        "the guest released the primary before the cancel: no wait-unplug left to cancel in (premise)"

    case.step("cancelling the migration while the source waits in wait-unplug")
    source.record("migrate-cancel")
    target.record("migration-failed")  # the cancel closes the stream under the target
    cancel_ns = time.monotonic_ns()
    source.qmp.execute("migrate_cancel")
    cancelling = source.qmp.wait_event("MIGRATION", {"status": "cancelling"}, qmp_mark, timeout=30)
    case.step("waiting for cancelled (QEMU waits for the guest's pending eject first)")
    cancelled = source.qmp.wait_event("MIGRATION", {"status": "cancelled"}, qmp_mark, timeout=CANCELLING_BOUND)
    released = record_guest_release(source, PRIMARY_ID, primary_name, agent_mark)
    agent_after_cancel = len(source.agent.events)
    visible = source.pci_ids()
    netdevs = wait_for_guest_due(source, failover_formed, "the primary re-enslaved on the source", Due(
        "FO-MIG-SRC-05", "MIGRATION cancelled", cancelled["host_ns"], REPLUG_SEEN_S, REPLUG_SEEN_SOURCE),
        agent_after_cancel)
    formed_ns = _reenslaved_ns(source, netdevs, agent_mark)

    case.save_json("source-events.json", _event_log(source, qmp_mark, unplug["host_ns"]))
    case.save_json("source-guest-events.json", _event_log(source, agent_mark, unplug["host_ns"], "agent"))
    case.save_json("source-guest-hotplug-log.json", _guest_hotplug_log(source))
    case.save_json("source-netdevs-after.json", netdevs)
    case.metric("wait_unplug_until_cancel", _seconds(cancel_ns, wait_unplug["host_ns"]), "s")
    case.metric("cancel_to_cancelling", _seconds(cancelling["host_ns"], cancel_ns), "s")
    case.metric("cancel_to_cancelled", _seconds(cancelled["host_ns"], cancel_ns), "s")
    if released is not None:
        case.metric("cancel_to_guest_release", _seconds(released["host_ns"], cancel_ns), "s")
        case.metric("guest_release_to_cancelled", _seconds(cancelled["host_ns"], released["host_ns"]), "s")
    case.metric("cancel_to_primary_reenslaved", _seconds(formed_ns, cancel_ns), "s")
    statuses = migration_statuses(source, qmp_mark)
    observed = {"source_statuses": statuses,
                "guest_released_after_cancel": released is not None and released["host_ns"] > cancel_ns}
    observed.update(reap_failed_target(target))
    case.save_json("observed.json", observed)

    assert statuses[-2:] == ["cancelling", "cancelled"], f"source MIGRATION statuses: {statuses}"
    assert released is not None and released["host_ns"] <= cancelled["host_ns"], (
        f"the migration was cancelled {_seconds(cancelled['host_ns'], cancel_ns)} s after migrate_cancel "
        f"while the guest still held {primary_name} (FO-MIG-SRC-04: cancelled only once released)")
    require(PRIMARY_ID in visible, "FO-MIG-SRC-05",
            f"the primary is not on the source's bus after cancelled (query-pci): {visible}")
    assert source.qmp.execute("query-status")["running"], "the source does not run on after the cancel"
    case.step("traffic through the re-plugged primary")
    assert_carried_by(source, case, MAC)


def _kill_qemu(vm) -> str:
    """SIGKILL to the VM's QEMU (its process group), reaped here; the
    factory's teardown then finds an exited process and only cleans up."""
    os.killpg(vm.process.pgid, signal.SIGKILL)
    return vm.process.wait(timeout=10.0).describe()


@pytest.mark.rule("FO-MIG-SRC-05", "FO-DATA-01")
@pytest.mark.needs("target-process")
def test_target_killed(vm_factory, case):
    migration = start_migration(vm_factory, case, "abort-kill", parameters=SLOW)
    source, target, qmp_mark = migration.source, migration.target, migration.qmp_mark
    unplug, = migration.expect_source(f"UNPLUG_PRIMARY {PRIMARY_ID}", due=migration.after_migrate("FO-MIG-SRC-01"))
    migration.expect_active_after(migration.wait_release())
    migration.expect_target("MIGRATION active", timeout=60)

    case.step("killing the target QEMU (SIGKILL) while the state is on its way")
    source.record("migration-failed")  # the stream breaks under the source
    kill_ns = time.monotonic_ns()
    exit_status = _kill_qemu(target)
    failed = source.qmp.wait_event("MIGRATION", {"status": "failed"}, qmp_mark, timeout=60)
    agent_after_failed = len(source.agent.events)
    visible = source.pci_ids()
    netdevs = wait_for_guest_due(source, failover_formed, "the primary re-enslaved on the source", Due(
        "FO-MIG-SRC-05", "MIGRATION failed", failed["host_ns"], REPLUG_SEEN_S, REPLUG_SEEN_SOURCE),
        agent_after_failed)
    formed_ns = _reenslaved_ns(source, netdevs, migration.agent_mark)

    case.save_json("source-events.json", _event_log(source, qmp_mark, unplug["host_ns"]))
    case.save_json("source-guest-events.json", _event_log(source, migration.agent_mark, unplug["host_ns"], "agent"))
    case.save_json("source-netdevs-after.json", netdevs)
    case.metric("kill_to_failed", _seconds(failed["host_ns"], kill_ns), "s")
    case.metric("kill_to_primary_reenslaved", _seconds(formed_ns, kill_ns), "s")
    statuses = migration_statuses(source, qmp_mark)
    case.save_json("observed.json", {"source_statuses": statuses, "target_exit": exit_status,
                                     "source_error": source.qmp.execute("query-migrate").get("error-desc")})

    assert statuses[-1] == "failed" and "cancelled" not in statuses, f"source MIGRATION statuses: {statuses}"
    require(PRIMARY_ID in visible, "FO-MIG-SRC-05",
            f"the primary is not on the source's bus after failed (query-pci): {visible}")
    assert source.qmp.execute("query-status")["running"], "the source does not run on after the failure"
    case.step("traffic through the re-plugged primary")
    assert_carried_by(source, case, MAC)
