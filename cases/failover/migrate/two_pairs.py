"""A guest with two failover pairs (two MACs) migrated: the source asks the
guest for both primaries, stays in wait-unplug until it has released both,
and the target plugs both back, each re-enslaved under its own MAC."""

import time

import pytest

from vnetct.failover.guest import MAC, PRIMARY_ID, STANDBY_ID, wait_for_guest
from vnetct.vm.guest import Nic, VmSpec
from vnetct.failover.hotplug import netdevs_brief, pairs_by_mac
from vnetct.failover.migration import prepare_migration
from vnetct.failover.trace import record_guest_release

SECOND_MAC = "52:54:00:6f:55:dd"
SECOND_STANDBY_ID = "net2"
SECOND_PRIMARY_ID = "hostdev1"
PAIRS = {MAC: (STANDBY_ID, PRIMARY_ID), SECOND_MAC: (SECOND_STANDBY_ID, SECOND_PRIMARY_ID)}


def _two_pairs_spec(name: str) -> VmSpec:
    nics = []
    for mac, (standby, primary) in PAIRS.items():
        nics.append(Nic("virtio-net-pci", mac, id=standby, properties={"failover": "on"}))
        nics.append(Nic("e1000e", mac, id=primary, properties={"failover_pair_id": standby}))
    return VmSpec(name, nics=nics)


def _both_pairs_formed(netdevs) -> bool:
    pairs = pairs_by_mac(netdevs)
    for mac in PAIRS:
        roles = pairs.get(mac, {})
        if not {"master", "standby", "primary"} <= roles.keys():
            return False
        if roles["primary"].get("master") != roles["master"]["name"]:
            return False
    return True


def _seconds(later, earlier):
    return round((later - earlier) / 1e9, 3)


@pytest.mark.rule("FO-MIG-SRC-01", "FO-MIG-SRC-02", "FO-MIG-SRC-03", "FO-MIG-TGT-02")
def test_unplug_migrate_replug(vm_factory, case):
    migration = prepare_migration(vm_factory, case, "two-pairs", spec=_two_pairs_spec("two-pairs-source"))
    source, target = migration.source, migration.target
    for standby, _ in PAIRS.values():
        source.qmp.wait_event("FAILOVER_NEGOTIATED", {"device-id": standby}, 0, timeout=60)
    netdevs = wait_for_guest(source, _both_pairs_formed, "two failover masters, each with standby and primary",
                             60.0)
    case.save_json("source-netdevs.json", netdevs)
    pairs = pairs_by_mac(netdevs)
    primary_names = {PAIRS[mac][1]: pairs[mac]["primary"]["name"] for mac in PAIRS}

    migration.begin()
    qmp_mark, agent_mark = migration.qmp_mark, migration.agent_mark
    # Source: both primaries requested (either order), wait-unplug until both are released.
    unplugs = dict(zip(primary_names, migration.expect_source(*(f"UNPLUG_PRIMARY {p}" for p in primary_names),
                                                              due=migration.after_migrate("FO-MIG-SRC-01"))))
    wait_unplug, active = migration.expect_source("MIGRATION wait-unplug", "MIGRATION active")
    completed, = migration.expect_source("MIGRATION completed", timeout=120)
    for primary, name in primary_names.items():
        record_guest_release(source, primary, name, agent_mark)
    released = {primary: next((e for e in source.trace_log if e["kind"] == "guest-released" and
                               e.get("primary") == primary), None) for primary in primary_names}
    case.save_json("source-migration-events.json", [(e["name"], e["data"]) for e in source.qmp.events[qmp_mark:]])
    unplug_order = [e["data"]["device-id"] for e in source.qmp.events[qmp_mark:] if e["name"] == "UNPLUG_PRIMARY"]
    case.metric("unplug_primary_order", " ".join(unplug_order))
    assert sorted(unplug_order) == sorted(primary_names), f"UNPLUG_PRIMARY events: {unplug_order}"
    for primary, event in released.items():
        assert event is not None, f"no evidence that the guest released {primary} ({primary_names[primary]})"
        assert event["t_ns"] <= active["host_ns"], \
            f"the migration went active before the guest released {primary}"
    last_release = max(event["t_ns"] for event in released.values())

    # Target: both primaries come back, each re-enslaved under its own MAC.
    case.step("waiting for the target to resume with both primaries")
    resume = target.qmp.wait_event("RESUME", None, 0, timeout=60)
    for standby, _ in PAIRS.values():
        target.qmp.wait_event("FAILOVER_NEGOTIATED", {"device-id": standby}, 0, timeout=60)
    netdevs = wait_for_guest(target, _both_pairs_formed, "both primaries re-enslaved on the target", 60.0)
    formed_ns = time.monotonic_ns()
    case.save_json("target-netdevs.json", netdevs)
    target_pci = target.pci_ids()
    assert set(primary_names) <= set(target_pci), f"the target's bus lacks a primary: {target_pci}"
    pairs = pairs_by_mac(netdevs)
    for mac in PAIRS:
        primary = pairs[mac]["primary"]
        assert primary["driver"] == "e1000e" and primary["parent_bus"] == "pci" and primary["perm_mac"] == mac, \
            f"the primary re-enslaved under {mac} is not the e1000e with that MAC: {netdevs_brief(netdevs)}"

    for primary, event in released.items():
        case.metric(f"unplug_latency_{primary}", _seconds(event["t_ns"], unplugs[primary]["host_ns"]), "s")
    case.metric("wait_unplug_duration", _seconds(active["host_ns"], wait_unplug["host_ns"]), "s")
    case.metric("last_release_to_active", _seconds(active["host_ns"], last_release), "s")
    case.metric("migration_total", _seconds(completed["host_ns"], min(e["host_ns"] for e in unplugs.values())), "s")
    info = source.qmp.execute("query-migrate")
    if "downtime" in info:
        case.metric("qemu_downtime", info["downtime"], "ms")
    case.metric("replug_enslaved_latency", _seconds(formed_ns, resume["host_ns"]), "s")  # RESUME to both enslaved
