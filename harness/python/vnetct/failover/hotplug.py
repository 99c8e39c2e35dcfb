"""Hot-plugging failover NICs into a running guest, as the hot-plug cases
declare it. A case declares every NIC in its VmSpec; a NIC with
`hot_plugged=True` is left off the command line, but its pcie-root-port and
its TAP exist from the start. `hot_plug` adds it later (netdev_add +
device_add), `device_del` removes a device and waits for DEVICE_DELETED, and
`load_standby_driver` lets the guest ack its standbys; each logs the model's
input (hot-plug, device-del, guest-ack) in the VM's trace. Every SUT takes
the same QMP commands."""

from __future__ import annotations

import dataclasses
import time
from typing import Dict, Iterable, List

from vnetct.failover.guest import (MAC, PRIMARY_DRIVERS, PRIMARY_ID, STANDBY_DRIVERS, STANDBY_ID, by_role, failover_formed,
                       wait_for_guest)
from vnetct.vm.guest import Nic, Vm, VmSpec
from vnetct.failover.migration import EVENTS_ON, expect_events
from vnetct.failover.trace import device_spec
from vnetct.core.native import HostTimeout

E1000_FAMILY = ("e1000e", "igb", "e1000")
BOOLEANS = {"on": True, "off": False}
# QMP device_add takes typed JSON: the command line's on/off become booleans for QEMU's
# bool properties only (disable-legacy, an OnOffAuto, takes the string).
BOOLEAN_PROPERTIES = ("failover",)


def nic_index(vm, device_id: str) -> int:
    for index, nic in enumerate(vm.spec.nics):
        if nic.id == device_id:
            return index
    raise KeyError(f"{vm.name}: no NIC with id {device_id} declared in its VmSpec")


def boot(factory, spec: VmSpec, target_room: bool = False, timeout: float = 120.0) -> Vm:
    """A booted VM of `spec`; `target_room`: its wire has TAPs for a migration
    target too (start_target)."""
    return factory.migration_source(spec, timeout) if target_room else factory.vm_booted(spec, timeout)


def hot_plug(vm, device_id: str, timeout: float = 30.0) -> dict:
    """netdev_add + device_add of the declared NIC `device_id`, as QEMU's
    command line would have it (own root port, its TAP). Raises HostError
    when the host refuses the device_add. Returns the DeviceSpec logged."""
    index = nic_index(vm, device_id)
    nic = vm.spec.nics[index]
    if not nic.hot_plugged:
        raise ValueError(f"{vm.name}: {device_id} is on the command line, not declared hot_plugged")
    device = device_spec(nic, index)
    vm.step(f"hot-plugging {nic.driver} {device_id} (bus {device['bus']})")
    netdev = f"hn{index}"  # as build_argv names the netdevs
    if nic.tap and vm.taps:  # a SUT without a datapath has no TAPs: a hub port stands in
        tap = vm.taps[sum(1 for other in vm.spec.nics[:index] if other.tap)]
        vm.qmp.execute("netdev_add", {"type": "tap", "id": netdev, "ifname": tap, "script": "no",
                                      "downscript": "no", "vnet_hdr": True}, timeout=timeout)
    else:
        vm.qmp.execute("netdev_add", {"type": "hubport", "id": netdev, "hubid": index}, timeout=timeout)
    properties = {key: BOOLEANS.get(value, value) if key in BOOLEAN_PROPERTIES else value
                  for key, value in nic.properties.items()}
    arguments = {"driver": nic.driver, "netdev": netdev, "mac": nic.mac, "bus": device["bus"], **properties}
    if nic.id is not None:
        arguments["id"] = nic.id
    if nic.driver in E1000_FAMILY:
        arguments["romfile"] = ""
    vm.record("hot-plug", device=device)
    vm.qmp.execute("device_add", arguments, timeout=timeout)
    return device


def device_del(vm, device_id: str, timeout: float = 60.0) -> dict:
    """device_del, then the host's DEVICE_DELETED for it (the guest has to
    eject the device first: ACPI or PCIe hot-unplug), then netdev_del of its
    backend, as a management layer does. Returns DEVICE_DELETED."""
    mark = len(vm.qmp.events)
    vm.step(f"device_del {device_id}, waiting for DEVICE_DELETED")
    vm.record("device-del", id=device_id)
    vm.qmp.execute("device_del", {"id": device_id})
    deleted = vm.qmp.wait_event("DEVICE_DELETED", {"device": device_id}, mark, timeout=timeout)
    vm.qmp.execute("netdev_del", {"id": f"hn{nic_index(vm, device_id)}"})  # as build_argv named it
    return deleted


def standbys_on_bus(vm) -> List[str]:
    """The failover=on standbys the guest has on its bus now: those on the
    command line and those hot-plugged and not deleted since."""
    added = {entry["device"]["id"] for entry in vm.trace_log if entry["kind"] == "hot-plug"}
    deleted = {entry["id"] for entry in vm.trace_log if entry["kind"] == "device-del"}
    return [nic.id for nic in vm.spec.nics
            if nic.driver == "virtio-net-pci" and nic.id and nic.properties.get("failover") == "on"
            and (not nic.hot_plugged or nic.id in added) and nic.id not in deleted]


def load_standby_driver(vm, timeout: float = 60.0) -> List[dict]:
    """Loads failover, net_failover and virtio_net: the driver acks the
    features of every standby on the bus. Logs one guest-ack per standby at
    the moment the load starts, with the bit 62 the guest reports once the
    driver has bound it (a bare guest-ack would take the bit from the last
    report of the whole trace, which has no standby any more once one was
    deleted). A standby hot-plugged just before may reach the guest (ACPI
    hotplug) only after the load: the driver binds it then, so the bits are
    read once every standby has its virtio_net netdev, within `timeout`; a
    standby the driver never binds counts as not acked."""
    acks = []
    for standby in standbys_on_bus(vm):
        vm.record("guest-ack", standby=standby, standby_bit=False)
        acks.append(vm.trace_log[-1])
    deadline = time.monotonic() + timeout
    modules = vm.request("load-modules", {"names": list(STANDBY_DRIVERS)}, timeout=timeout)["modules"]
    macs = [vm.spec.nics[nic_index(vm, ack["standby"])].mac for ack in acks]

    def standby_netdev(netdevs, mac):
        return next((n for n in netdevs if n.get("driver") == "virtio_net" and n.get("mac") == mac), None)

    try:
        netdevs = wait_for_guest(vm, lambda netdevs: all(standby_netdev(netdevs, mac) for mac in macs),
                                 "virtio_net bound to every standby on the bus", max(0.5, deadline - time.monotonic()))
    except HostTimeout:
        netdevs = vm.report()
    for ack, mac in zip(acks, macs):
        ack["standby_bit"] = 62 in ((standby_netdev(netdevs, mac) or {}).get("virtio_feature_bits") or [])
    return modules


def start_target(factory, source, name: str) -> Vm:
    """The migration target of `source` as it is now: every NIC the source
    has (hot-plugged ones now on the command line, in declaration order),
    none it deleted."""
    added = {entry["device"]["id"] for entry in source.trace_log if entry["kind"] == "hot-plug"}
    deleted = {entry["id"] for entry in source.trace_log if entry["kind"] == "device-del"}
    nics = [dataclasses.replace(nic, hot_plugged=False, properties=dict(nic.properties))
            for nic in source.spec.nics
            if (not nic.hot_plugged or nic.id in added) and nic.id not in deleted]
    spec = dataclasses.replace(source.spec, name=name, nics=nics, extra_args=list(source.spec.extra_args),
                               kernel_args=list(source.spec.kernel_args))
    return factory.target_of(source, spec)


def migrate_source_only(factory, source) -> int:
    """Starts a migration of `source` with events on, into a stream that is
    thrown away (the SUT's discard URI). Returns the source's QMP event
    index before the migration."""
    uri = factory.discard_uri(source)
    mark = len(source.qmp.events)
    source.qmp.execute("migrate-set-capabilities", EVENTS_ON)
    source.step(f"migrating {source.name} (source side only: the stream is discarded)")
    source.record("migrate")
    source.qmp.execute("migrate", {"uri": uri})
    return mark


# 1 MiB/s: a 512 MiB guest is still on its way minutes after `migrate`, so a cancel
# finds the migration active, never completed.
SLOW_TRANSFER = {"max-bandwidth": 1 << 20}


def cancel_while_active(factory, source, timeout: float = 60.0) -> int:
    """Migrates `source` (migrate_source_only, throttled to SLOW_TRANSFER),
    waits for MIGRATION active, cancels, waits for MIGRATION cancelled, each
    within `timeout`. Returns the source's QMP event index before the
    migration: the case judges what came since."""
    source.qmp.execute("migrate-set-parameters", SLOW_TRANSFER)
    mark = migrate_source_only(factory, source)
    expect_events(source, ["MIGRATION active"], mark, timeout)
    source.step("cancelling the active migration")
    source.record("migrate-cancel")
    source.qmp.execute("migrate_cancel")
    expect_events(source, ["MIGRATION cancelled"], mark, timeout)
    return mark


def cancel_without_primary(factory, source, case, what: str) -> List[str]:
    """A migration of a guest holding no negotiated primary (`what` says why),
    cancelled while active: it must neither ask for a primary (no
    UNPLUG_PRIMARY) nor wait for one (no wait-unplug), FO-MIG-SRC-01. Returns
    the source's MIGRATION statuses (saved as source-statuses.json)."""
    from vnetct.failover.migration import migration_statuses

    mark = len(source.qmp.events)
    try:
        mark = cancel_while_active(factory, source)
    except HostTimeout as error:
        raise AssertionError(f"FO-MIG-SRC-01: the migration of {what} did not go active and cancel ({error}); "
                             f"statuses {migration_statuses(source, mark)}") from None
    statuses = migration_statuses(source, mark)
    case.save_json("source-statuses.json", statuses)
    assert not events_named(source, "UNPLUG_PRIMARY", mark), f"FO-MIG-SRC-01: UNPLUG_PRIMARY for {what}"
    assert "wait-unplug" not in statuses, f"FO-MIG-SRC-01: wait-unplug without a primary to release: {statuses}"
    return statuses


def pairs_by_mac(netdevs: Iterable[dict]) -> Dict[str, Dict[str, dict]]:
    """The guest's failover netdevs grouped by MAC: {mac: {role: netdev}}."""
    pairs: Dict[str, Dict[str, dict]] = {}
    for netdev in netdevs:
        if netdev.get("failover_role"):
            pairs.setdefault(netdev["mac"], {})[netdev["failover_role"]] = netdev
    return pairs


def master_with_standby_only(netdevs: List[dict]) -> bool:
    roles = by_role(netdevs)
    return {"master", "standby"} <= roles.keys() and "primary" not in roles


def netdevs_brief(netdevs: Iterable[dict]) -> List[tuple]:
    return [(n["name"], n.get("driver"), n.get("mac"), n.get("master"), n.get("failover_role")) for n in netdevs
            if n.get("driver")]


# -- shared by the hot-plug and removal cases ---------------------------------

def standby_nic(hot: bool = False) -> Nic:
    return Nic("virtio-net-pci", MAC, id=STANDBY_ID, properties={"failover": "on"}, hot_plugged=hot)


def primary_nic(hot: bool = False, device_id: str = PRIMARY_ID) -> Nic:
    return Nic("e1000e", MAC, id=device_id, properties={"failover_pair_id": STANDBY_ID}, hot_plugged=hot)


def seconds(later_ns, earlier_ns):
    return round((later_ns - earlier_ns) / 1e9, 3)


def events_named(vm, name, mark):
    return [e for e in vm.qmp.events[mark:] if e["name"] == name]


def e1000e_netdevs(netdevs):
    return [n for n in netdevs if n.get("driver") == "e1000e"]


def negotiate(vm) -> list:
    """The guest loads every NIC driver, acks STANDBY, forms the failover master."""
    vm.load_drivers(PRIMARY_DRIVERS)
    qmp_mark = len(vm.qmp.events)
    load_standby_driver(vm)
    vm.qmp.wait_event("FAILOVER_NEGOTIATED", {"device-id": STANDBY_ID}, qmp_mark, timeout=60)
    return wait_for_guest(vm, failover_formed, "a failover master with standby and primary", 60.0)
