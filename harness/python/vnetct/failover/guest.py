"""The failover topology the failover cases declare: one guest with a virtio-net
standby (failover=on) and an e1000e primary paired by MAC, each on its own
pcie-root-port, TAP-backed on an eswitch-like wire. The guest boots with no
NIC driver loaded; the cases decide when it negotiates."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from vnetct.vm.guest import (PRIMARY_DRIVERS, STANDBY_DRIVERS, VF_DRIVERS, GuestFailure, NoMoreEvents, Nic, Vm,
                             VmSpec)
from vnetct.core.native import HostTimeout
from vnetct.failover.trace import VIRTIO_NET_F_STANDBY
from vnetct.core.verdict import Due, RuleViolation, due_event, require

MAC = "52:54:00:6f:55:cc"
STANDBY_ID = "net1"
PRIMARY_ID = "hostdev0"


def failover_spec(name: str, primary_driver: str = "e1000e", primary_id: Optional[str] = PRIMARY_ID,
                  primary_bus: Optional[str] = None, pair_id: str = STANDBY_ID,
                  standby_failover: str = "on", legacy_guest_driver: bool = False,
                  hot_plugged: bool = False) -> VmSpec:
    """`legacy_guest_driver`: the standby is transitional and the guest drives it
    through the legacy virtio interface, which has only 32 feature bits: a guest
    that cannot ack VIRTIO_NET_F_STANDBY (bit 62). `hot_plugged`: both NICs are
    left off the command line for the case to hot-plug (failover.hotplug)."""
    standby_properties = {"failover": standby_failover}
    kernel_args = []
    if legacy_guest_driver:
        standby_properties["disable-legacy"] = "off"
        kernel_args.append("virtio_pci.force_legacy=1")
    standby = Nic("virtio-net-pci", MAC, id=STANDBY_ID, properties=standby_properties, hot_plugged=hot_plugged)
    primary = Nic(primary_driver, MAC, id=primary_id, bus=primary_bus, properties={"failover_pair_id": pair_id},
                  hot_plugged=hot_plugged)
    return VmSpec(name, nics=[standby, primary], kernel_args=kernel_args)


def by_role(netdevs: List[dict]) -> Dict[str, dict]:
    return {netdev["failover_role"]: netdev for netdev in netdevs if netdev.get("failover_role")}


def wait_for_guest(vm: Vm, condition, what: str, timeout: float, from_index: int = 0) -> List[dict]:
    """Re-reads the guest's netdevs after each agent event until `condition`
    holds; bounded by `timeout`. The message says what was seen instead."""
    started = time.monotonic()
    deadline = started + timeout
    index = from_index
    while True:
        netdevs = vm.report(timeout=max(0.5, deadline - time.monotonic()))
        if condition(netdevs):
            return netdevs
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            seen = [(n["name"], n.get("driver"), n.get("master"), n.get("failover_role")) for n in netdevs]
            raise HostTimeout(f"{vm.name}: waited {time.monotonic() - started:.1f} s (of {timeout:.0f} s) for {what}; "
                              f"guest netdevs (name, driver, master, role): {seen}")
        try:
            # Any agent event (netdev-added, -removed, -changed) may complete the condition.
            event = vm.agent.wait_event("", None, index, timeout=min(remaining, 2.0))
            index = event["index"] + 1
        except NoMoreEvents:
            deadline = time.monotonic()  # the guest changes only when the harness acts
        except HostTimeout:
            index = len(vm.agent.events)


# A re-plug the guest must see: ACPI or pciehp hot-plug, then the driver's probe
# and net_failover's enslaving, under TCG on a loaded host.
REPLUG_SEEN_S = 15.0
REPLUG_SEEN_SOURCE = "hot-plug notification, probe and enslaving under TCG; 15 s for a loaded host"


def wait_for_guest_due(vm: Vm, condition, what: str, due: Due, from_index: int = 0) -> List[dict]:
    """wait_for_guest for a change the host owes (a re-plug): its absence by
    the due's deadline violates due.rule, with what the guest showed."""
    try:
        return wait_for_guest(vm, condition, what, max(0.5, due.remaining()), from_index)
    except HostTimeout as error:
        raise RuleViolation(due.rule, f"{what}: not seen {due.describe()}: {error}") from None


def failover_formed(netdevs: List[dict]) -> bool:
    roles = by_role(netdevs)
    return {"master", "standby", "primary"} <= roles.keys()


@dataclass
class Negotiation:
    modules: List[dict]
    event: dict                      # FAILOVER_NEGOTIATED
    pci_after: List[str]
    netdevs: List[dict]              # guest view once the failover master is complete
    load_started_ns: int
    formed_ns: int
    kernel_log: List[str] = field(default_factory=list)

    def role(self, name: str) -> dict:
        return by_role(self.netdevs)[name]




# FAILOVER_NEGOTIATED is due this soon after the guest's ack: QEMU emits it while
# handling the driver's feature write (virtio_net_set_features), which the probe
# completes before modprobe returns; 5 s covers a loaded TCG host and QMP.
NEGOTIATED_BOUND_S = 5.0
NEGOTIATED_BOUND_SOURCE = "emitted in the feature write the probe makes; 5 s for a loaded TCG host"
STANDBY_FEATURE = "VIRTIO_NET_F_STANDBY"


def failover_standbys(spec) -> List[str]:
    """The ids of the NICs declared as failover standbys (virtio, failover=on)."""
    return [nic.id for nic in spec.nics if nic.driver == "virtio-net-pci" and nic.id and
            nic.properties.get("failover") == "on" and not getattr(nic, "hot_plugged", False)]


def standby_features(vm, standby_id: str) -> dict:
    """VIRTIO_NET_F_STANDBY as the host sees it (x-query-virtio-status): offered
    by the device (host-features) and acked by the guest (guest-features).
    Where the QEMU cannot show them (the Sut's capability virtio-status), the
    guest's word for the ack, and the offer unknown (`host_view` says why)."""
    lacks = getattr(vm, "lacks", None)
    unavailable = lacks("virtio-status") if lacks is not None else None
    if unavailable:
        mac = next((nic.mac for nic in vm.spec.nics if nic.id == standby_id), None)
        netdev = next((n for n in vm.report() if n.get("driver") == "virtio_net" and
                       str(n.get("mac", "")).lower() == str(mac).lower()), None)
        acked = bool(netdev) and VIRTIO_NET_F_STANDBY in (netdev.get("virtio_feature_bits") or [])
        return {"standby": standby_id, "offered": None, "acked": acked, "host_view": unavailable,
                "guest_netdev": netdev}
    status = vm.qmp.execute("x-query-virtio-status", {"path": f"/machine/peripheral/{standby_id}/virtio-backend"})

    def has(features: dict) -> bool:
        return any(str(f).startswith(STANDBY_FEATURE + ":") for f in (features or {}).get("dev-features", []))

    bits = {"standby": standby_id, "offered": has(status.get("host-features")),
            "acked": has(status.get("guest-features"))}
    return bits


def remaining(deadline: float) -> float:
    return max(0.1, deadline - time.monotonic())


class FailoverGuest:
    """A booted failover guest whose primary driver (e1000e) is already loaded
    but whose virtio_net is not: `before_*` is what the host and the guest
    showed then. Were the primary not hidden, the guest would already have an
    e1000e netdev."""

    def __init__(self, vm: Vm, timeout: float = 60.0):
        self.vm = vm
        passed_through = any(nic.driver == "vfio-pci" for nic in vm.spec.nics)
        drivers = PRIMARY_DRIVERS + (VF_DRIVERS if passed_through else ())
        vm.step(f"loading the primary's driver ({'the VF drivers' if passed_through else 'e1000e'}) before "
                f"virtio_net")
        self.primary_modules = vm.load_drivers(drivers, timeout=timeout)
        self.before_pci = vm.pci_ids()
        self.before_peripherals = vm.peripheral_ids()
        self.before_netdevs = vm.report()
        self.qmp_mark = len(vm.qmp.events)
        self.agent_mark = len(vm.agent.events)
        self.negotiation: Optional[Negotiation] = None

    def negotiate(self, timeout: float = 90.0) -> Negotiation:
        """Load virtio_net (the guest acks STANDBY), then FAILOVER_NEGOTIATED is
        due from the host within NEGOTIATED_BOUND_S (FO-NEG-02), then the guest
        completes its failover master, all within one `timeout`. The host's own
        view of the standby's feature bits tells a host that never offered bit
        62 (FO-NEG-02) from a guest that did not ack it (not a host verdict).
        Done once; later calls return the recorded outcome."""
        if self.negotiation is not None:
            return self.negotiation
        vm = self.vm
        deadline = time.monotonic() + timeout
        started_ns = time.monotonic_ns()
        vm.step("loading failover, net_failover, virtio_net in the guest")
        modules = vm.load_drivers(STANDBY_DRIVERS, timeout=remaining(deadline))
        acked_ns = time.monotonic_ns()  # modprobe returns after the probe, which writes the acked features
        for standby in failover_standbys(vm.spec):
            bits = standby_features(vm, standby)
            if bits["offered"] is None:
                vm.step(f"the host's view of {standby}'s feature bits is unavailable, the guest's word for the ack: "
                        f"{bits['host_view']}")
            require(bits["offered"] is not False, "FO-NEG-02", f"{vm.name}: the standby {standby} declared failover=on does "
                    "not offer VIRTIO_NET_F_STANDBY (QEMU's host-features); the guest cannot ack it", bits)
            if not bits["acked"]:
                raise GuestFailure(f"{vm.name}: the guest did not ack VIRTIO_NET_F_STANDBY on {standby}, which "
                                   f"the host offered (guest-features): no host rule is judged" if bits["offered"]
                                   else f"{vm.name}: the guest reports no ack of VIRTIO_NET_F_STANDBY on {standby} "
                                   f"and the host's view is unavailable ({bits['host_view']}): no host rule is judged")
        vm.step("waiting for FAILOVER_NEGOTIATED")
        event = due_event(vm, "FAILOVER_NEGOTIATED", None, self.qmp_mark,
                          Due("FO-NEG-02", "the guest's ack of VIRTIO_NET_F_STANDBY", acked_ns, NEGOTIATED_BOUND_S,
                              NEGOTIATED_BOUND_SOURCE))
        pci_after = vm.pci_ids()
        vm.step("waiting for the guest to enslave standby and primary")
        netdevs = wait_for_guest(vm, failover_formed, "a failover master with standby and primary slaves",
                                 remaining(deadline), self.agent_mark)
        formed_ns = time.monotonic_ns()
        kernel_log = vm.request("kernel-log", timeout=remaining(deadline))["lines"]
        self.negotiation = Negotiation(modules, event, pci_after, netdevs, started_ns, formed_ns, kernel_log)
        vm.save_json("negotiation.json", {"modules": modules, "event": event, "pci_after": pci_after,
                                          "netdevs": netdevs})
        return self.negotiation


E1000E_PCI_ID = (0x8086, 0x10D3)
IGB_PCI_ID = (0x8086, 0x10C9)


@dataclass
class ConfigObservation:
    """What host and guest did with one failover configuration, from start to
    'the guest has loaded every NIC driver'."""
    start_error: Optional[str] = None      # QEMU refused to start: its stderr
    before_pci: List[dict] = field(default_factory=list)
    after_pci: List[dict] = field(default_factory=list)
    negotiated: List[dict] = field(default_factory=list)  # FAILOVER_NEGOTIATED events
    netdevs: List[dict] = field(default_factory=list)
    stderr: str = ""

    def to_json(self) -> dict:
        return {"start_error": self.start_error, "before_pci": self.before_pci, "after_pci": self.after_pci,
                "negotiated": self.negotiated, "netdevs": self.netdevs, "stderr": self.stderr}


def _ids(devices: List[dict]) -> List[str]:
    return [d["qdev_id"] for d in devices if d.get("qdev_id")]


def pci_has(devices: List[dict], pci_id: tuple) -> bool:
    return any((d.get("id", {}).get("vendor"), d.get("id", {}).get("device")) == pci_id for d in devices)


def observe_configuration(factory, spec: VmSpec) -> ConfigObservation:
    """Start `spec`, record query-pci, let the guest load its NIC drivers,
    record again. A FAILOVER_NEGOTIATED caused by the driver's feature ack is
    emitted while the guest is still in its probe, so the query-pci issued
    after the load-modules reply comes back after it: no waiting needed."""
    from vnetct.vm.guest import VmStartError

    observation = ConfigObservation()
    try:
        vm = factory.vm(spec)
    except VmStartError as error:
        observation.start_error = error.stderr.strip() or str(error)
        observation.stderr = error.stderr
        return observation
    vm.wait_booted()
    observation.before_pci = vm.pci_devices()
    mark = len(vm.qmp.events)
    vm.step("loading the NIC drivers in the guest")
    vm.load_drivers()
    observation.after_pci = vm.pci_devices()
    observation.negotiated = [e for e in vm.qmp.events[mark:] if e["name"] == "FAILOVER_NEGOTIATED"]
    primary = spec.nics[1]
    plugged_now = (primary.id is not None and
                   primary.id in _ids(observation.after_pci) and primary.id not in _ids(observation.before_pci))
    if observation.negotiated and plugged_now:
        # A primary plugged by the negotiation reaches the guest asynchronously (ACPI hotplug).
        wait_for_guest(vm, lambda netdevs: any(d.get("driver") == primary.driver for d in netdevs),
                       f"a {primary.driver} netdev after FAILOVER_NEGOTIATED", 60.0)
    observation.netdevs = vm.report()
    observation.stderr = vm.stderr_text()
    vm.save_json("observation.json", observation.to_json())
    return observation
