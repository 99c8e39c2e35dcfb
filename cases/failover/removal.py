"""Failover devices removed from a negotiated pair with device_del: a
deleted device leaves with DEVICE_DELETED, the guest loses exactly it, and it
is no longer unplugged on migration; a replacement primary may take the
deleted one's place."""

import time

import pytest

from vnetct.failover.guest import PRIMARY_ID, STANDBY_ID, by_role, failover_formed, wait_for_guest
from vnetct.vm.guest import VmSpec
from vnetct.failover.hotplug import (boot, device_del, hot_plug, master_with_standby_only, migrate_source_only, negotiate,
                            netdevs_brief, primary_nic, seconds, standby_nic)
from vnetct.core.native import HostError

REPLACEMENT_ID = "hostdev1"


@pytest.mark.rule("FO-MIG-SRC-01", "FO-MIG-SRC-02")
def test_device_del_primary(vm_factory, case):
    vm = boot(vm_factory, VmSpec("hp-del-primary", nics=[standby_nic(), primary_nic()]))
    case.uses(vm)
    netdevs = negotiate(vm)
    primary_name = by_role(netdevs)["primary"]["name"]
    qmp_mark, agent_mark = len(vm.qmp.events), len(vm.agent.events)
    asked_ns = time.monotonic_ns()
    deleted = device_del(vm, PRIMARY_ID)
    case.save_json("events-after-device-del.json", [(e["name"], e["data"]) for e in vm.qmp.events[qmp_mark:]])
    case.metric("device_deleted_after", seconds(deleted["host_ns"], asked_ns), "s")
    assert deleted["data"].get("path") == f"/machine/peripheral/{PRIMARY_ID}", f"DEVICE_DELETED: {deleted['data']}"
    assert PRIMARY_ID not in vm.pci_ids(), "the primary is still on the bus after DEVICE_DELETED"
    netdevs = wait_for_guest(vm, master_with_standby_only, "the failover master left with its standby only", 60.0,
                             agent_mark)
    case.save_json("guest-netdevs-after-device-del.json", netdevs)
    removed = [e for e in vm.agent.events[agent_mark:] if e["name"] == "netdev-removed"]
    assert [e["data"]["name"] for e in removed] == [primary_name], \
        f"the guest should lose exactly the primary {primary_name}: netdev-removed for " \
        f"{[e['data']['name'] for e in removed]}"

    # No primary is left to release: the migration neither asks for one nor waits.
    qmp_mark = migrate_source_only(vm_factory, vm)
    vm.qmp.wait_event("MIGRATION", {"status": "completed"}, qmp_mark, timeout=120)
    seen = [(e["name"], e["data"]) for e in vm.qmp.events[qmp_mark:]]
    case.save_json("source-migration-events.json", seen)
    assert not [e for e in seen if e[0] == "UNPLUG_PRIMARY"], f"UNPLUG_PRIMARY for a deleted primary: {seen}"
    assert ("MIGRATION", {"status": "wait-unplug"}) not in seen, f"wait-unplug with no primary: {seen}"


@pytest.mark.rule("FO-MIG-SRC-01")
def test_device_del_standby(vm_factory, case):
    vm = boot(vm_factory, VmSpec("hp-del-standby", nics=[standby_nic(), primary_nic()]))
    case.uses(vm)
    netdevs = negotiate(vm)
    roles = by_role(netdevs)
    qmp_mark, agent_mark = len(vm.qmp.events), len(vm.agent.events)
    deleted = device_del(vm, STANDBY_ID)
    case.save_json("events-after-device-del.json", [(e["name"], e["data"]) for e in vm.qmp.events[qmp_mark:]])
    pci = vm.pci_ids()
    assert STANDBY_ID not in pci and PRIMARY_ID in pci, f"only the standby should have left the bus: {pci}"
    assert deleted["data"].get("path") == f"/machine/peripheral/{STANDBY_ID}", f"DEVICE_DELETED: {deleted['data']}"
    # The guest loses the standby and its failover master; the primary stays, on its own.
    netdevs = wait_for_guest(vm, lambda n: not any(d.get("failover_role") for d in n),
                             "no failover netdev left", 60.0, agent_mark)
    case.save_json("guest-netdevs-after-device-del.json", netdevs)
    primary = [n for n in netdevs if n["name"] == roles["primary"]["name"]]
    assert primary and primary[0]["master"] is None, \
        f"the primary should stay, unenslaved: {netdevs_brief(netdevs)}"
    removed = sorted(e["data"]["name"] for e in vm.agent.events[agent_mark:] if e["name"] == "netdev-removed")
    case.metric("guest_netdevs_removed", removed)

    # The primary has no standby any more: a migration takes it along as a plain device.
    qmp_mark = migrate_source_only(vm_factory, vm)
    vm.qmp.wait_event("MIGRATION", {"status": "completed"}, qmp_mark, timeout=120)
    seen = [(e["name"], e["data"]) for e in vm.qmp.events[qmp_mark:]]
    case.save_json("source-migration-events.json", seen)
    assert not [e for e in seen if e[0] == "UNPLUG_PRIMARY"], f"UNPLUG_PRIMARY without a standby: {seen}"
    assert ("MIGRATION", {"status": "wait-unplug"}) not in seen, f"wait-unplug without a standby: {seen}"


@pytest.mark.rule("FO-CFG-09", "FO-NEG-02")
def test_replacement_primary_after_device_del(vm_factory, case):
    # A VF swap: the primary is deleted, another one (new id, same MAC and standby) takes its
    # place. Measured on QEMU 10: the standby keeps the deleted primary's options (freed only
    # with the standby) and refuses the new id, "Cannot attach more than one primary device".
    nics = [standby_nic(), primary_nic(), primary_nic(hot=True, device_id=REPLACEMENT_ID)]
    vm = boot(vm_factory, VmSpec("hp-replace", nics=nics))
    case.uses(vm)
    negotiate(vm)
    agent_mark = len(vm.agent.events)
    device_del(vm, PRIMARY_ID)
    wait_for_guest(vm, master_with_standby_only, "the failover master left with its standby only", 60.0, agent_mark)
    agent_mark = len(vm.agent.events)
    try:
        hot_plug(vm, REPLACEMENT_ID)
    except HostError as error:
        case.save_json("device-add-error.json", {"error": str(error), "pci": vm.pci_ids()})
        raise AssertionError(f"the host refused a new primary for {STANDBY_ID} after its primary {PRIMARY_ID} "
                             f"was deleted (DEVICE_DELETED seen): {error}. The trace checker's verdict: "
                             f"verdict-{vm.name}.json") from None
    assert REPLACEMENT_ID in vm.pci_ids(), "the standby had negotiated, yet the replacement is not on the bus"
    netdevs = wait_for_guest(vm, failover_formed, "the replacement primary enslaved", 60.0, agent_mark)
    case.save_json("guest-netdevs.json", netdevs)
