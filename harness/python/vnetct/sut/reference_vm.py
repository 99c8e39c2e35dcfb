"""The `reference` SUT profile: the reference failover model plays the host,
and a simulated guest plays the Linux guest, in process.

In process (not behind a QMP socket) because the point of this profile is a
fast self-test of the cases and the checker: the whole failover suite runs in
about a second, and mutated models (`--mutation`) show that the cases catch
real host bugs. The QMP and guest agent clients are covered by their own unit
tests and by the qemu profile. A ReferenceVm offers the same surface the cases
use on a real Vm (qmp.execute/events/wait_event, agent requests and events,
pci_ids, report, load_drivers, ...); what it cannot do (a datapath) it says,
and the cases skip with that reason. Live migration between two ReferenceVms
(a source and an `incoming` target): reference_migration.py."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from vnetct.vm.guest import VmSpec, VmStartError, DRIVER_MODULES, NoMoreEvents
from vnetct.core.native import HostError, vnetct_native
from vnetct.sut.reference_migration import ReferenceMigration
from vnetct.failover.trace import VIRTIO_NET_F_STANDBY, TraceLog, device_spec, device_specs

PCI_IDS = {"virtio-net-pci": (0x1AF4, 0x1041), "e1000e": (0x8086, 0x10D3), "igb": (0x8086, 0x10C9)}
NIC_MODULES = {"virtio-net-pci": "virtio_net", "e1000e": "e1000e", "igb": "igb"}
BASE_FEATURES = [0, 1, 5, 16, 32]  # a plausible acked set; 62 is added when negotiated

_last_stamp = 0


def _stamp() -> int:
    """A host arrival time, strictly after every earlier one: the simulation
    does many things within one clock tick, and the trace orders by time."""
    global _last_stamp
    _last_stamp = max(time.monotonic_ns(), _last_stamp + 1)
    return _last_stamp


class _EventStore:
    """Events as the real clients keep them, with the same wait semantics;
    the simulation is synchronous, so a wait that finds nothing times out at
    once with the same kind of message. Before giving up, a wait lets time
    pass: a pending migration transfer finishes (`idle`)."""

    def __init__(self, what: str, idle=None):
        self.what = what
        self.events: List[dict] = []
        self.idle = idle or (lambda: False)

    def add(self, name: str, data: Any) -> None:
        self.events.append({"name": name, "data": data, "host_ns": _stamp(),
                            "qemu_timestamp": time.time(), "index": len(self.events)})

    def find(self, name: str, match: Optional[dict], from_index: int) -> Optional[dict]:
        for event in self.events[from_index:]:
            if event["name"] == name and all(event["data"].get(k) == v for k, v in (match or {}).items()):
                return event
        return None

    def wait_event(self, name: str, match: Optional[dict] = None, from_index: int = 0, timeout: float = 30.0):
        event = self.find(name, match, from_index)
        if event is None and self.idle():
            event = self.find(name, match, from_index)
        if event is not None:
            return event
        seen = ", ".join(e["name"] for e in self.events[from_index:]) or "none"
        raise NoMoreEvents(f"{self.what} event {name} matching {match} not seen (reference model: nothing more "
                          f"will arrive); events since #{from_index}: {seen}")

    def pump(self, timeout: float) -> int:
        return 0


class SimulatedQmp(_EventStore):
    def __init__(self, vm: "ReferenceVm"):
        super().__init__("QMP", idle=vm.finish_transfer)
        self.vm = vm
        self.closed = False

    def execute(self, command: str, arguments: Optional[dict] = None, timeout: float = 30.0):
        self.vm.transcript("qmp", "out", {"execute": command, "arguments": arguments})
        if command == "query-pci":
            devices = []
            for device in self.vm.model.visible_devices:
                nic = self.vm.nic(device)
                vendor, device_id = PCI_IDS.get(nic["driver"], (0, 0))
                devices.append({"qdev_id": device, "id": {"vendor": vendor, "device": device_id}})
            reply: Any = [{"bus": 0, "devices": devices}]
        elif command == "qom-list":
            if (arguments or {}).get("path") != "/machine/peripheral":
                raise HostError("qom-list: the reference model only knows /machine/peripheral")
            reply = [{"name": d, "type": f"child<{self.vm.nic(d)['driver']}>"} for d in self.vm.model.visible_devices]
        elif command == "x-query-virtio-status":
            reply = self.virtio_status((arguments or {}).get("path", ""))
        elif command in ("cont", "quit", "qmp_capabilities", "netdev_add", "netdev_del"):
            reply = {}  # no backends in the model: a netdev is accepted and has no effect
        elif command == "device_add":
            reply = self.vm.device_add(arguments or {})
        elif command == "device_del":
            reply = self.vm.device_del((arguments or {}).get("id", ""))
        elif (migration := self.vm.migration_command(command, arguments)) is not NotImplemented:
            reply = migration
        else:
            raise HostError(f"the command returned an error: {command}: the reference model does not implement it")
        self.vm.transcript("qmp", "in", {"return": reply})
        return reply


    def virtio_status(self, path: str) -> dict:
        """x-query-virtio-status of a standby, as QEMU decodes it: offered
        (host-features) and acked (guest-features) device features."""
        device_id = path.removeprefix("/machine/peripheral/").removesuffix("/virtio-backend")
        nic = next((d for d in self.vm.devices if d["id"] == device_id and d["driver"] == "virtio-net-pci"), None)
        if nic is None:
            raise HostError(f"the command returned an error: x-query-virtio-status: no virtio device at {path}")
        standby = ["VIRTIO_NET_F_STANDBY: Device acting as standby for primary device with same MAC addr. supported"]
        offered = standby if nic["failover"] else []
        acked = standby if self.vm.agent.acked.get(device_id) else []
        return {"name": "virtio-net", "host-features": {"dev-features": offered, "transports": []},
                "guest-features": {"dev-features": acked, "transports": []}}


class SimulatedGuest(_EventStore):
    """A Linux guest as net_failover builds it: the failover master pairs the
    standby and any NIC with the same MAC, once the standby acked STANDBY."""

    def __init__(self, vm: "ReferenceVm"):
        super().__init__("guest agent", idle=vm.finish_transfer)
        self.vm = vm
        self.modules: List[str] = []
        self.netdevs: Dict[str, dict] = {}   # by role key (device id or "master:<id>")
        self.acked: Dict[str, bool] = {}     # standby id -> bit 62 acked
        self.kernel_log: List[str] = []
        self.next_index = 2  # lo is 1

    def wait_hello(self, timeout: float) -> dict:
        return {"event": "hello", "version": 1, "kernel": "reference-simulated-guest"}

    def request(self, command: str, arguments: Optional[dict] = None, timeout: float = 30.0):
        self.vm.transcript("agent", "out", {"cmd": command, **(arguments or {})})
        if command == "report":
            reply: Any = {"netdevs": self.report()}
        elif command == "load-modules":
            reply = {"modules": [self.load(name) for name in arguments["names"]]}
        elif command == "kernel-log":
            reply = {"lines": list(self.kernel_log)}
        elif command in ("ip-config", "udp-echo"):
            raise HostError(f"the command returned an error: {command}: the reference profile has no datapath")
        elif command == "ping":
            reply = {}
        else:
            raise HostError(f"the command returned an error: unknown command {command}")
        self.vm.transcript("agent", "in", {"ok": True, "result": reply})
        return reply

    def load(self, name: str) -> dict:
        if name in self.modules:
            return {"name": name, "status": "already-loaded", "ms": 0.0}
        self.modules.append(name)
        if name == "virtio_net":
            for index, nic in enumerate(self.vm.devices):
                if nic["driver"] == "virtio-net-pci" and nic["id"] in self.vm.model.visible_devices:
                    # The driver acks STANDBY when offered, unless it drives a transitional
                    # device through the legacy interface (32 feature bits only).
                    legacy = ("virtio_pci.force_legacy=1" in self.vm.spec.kernel_args and
                              self.vm.spec.nics[index].properties.get("disable-legacy") == "off")
                    self.acked[nic["id"]] = nic["failover"] and not legacy
                    self.vm.model_input("guest_ack_features", nic["id"], self.acked[nic["id"]])
        self.rebuild()
        return {"name": name, "status": "loaded", "ms": 1.0}

    def device_plugged(self) -> None:
        self.rebuild()

    def release_requested(self) -> None:
        """The guest ejects every primary the host asked it to release. It acts
        on the host's request itself (the ACPI/PCIe hot-unplug request: the
        model's primary state unplug-requested), not on the UNPLUG_PRIMARY QMP
        event, which only tells the management layer; for the correct model the
        two coincide, a model that asks without the event (NoUnplugPrimaryEvent)
        still gets its primary released. Each release is logged at the moment
        the primary's netdev leaves the guest (guest-released, then the model's
        input; its Unplugged output removes the netdev: netdev-removed)."""
        if not self.vm.model.guest_running:
            return
        visible = self.vm.model.visible_devices
        for nic in self.vm.devices:
            if not nic["id"] or not nic["failover_pair_id"] or nic["id"] not in visible:
                continue
            try:
                state = self.vm.model.primary_state(nic["id"])
            except vnetct_native.ModelError:
                continue
            if state == "unplug-requested":
                self.vm.step(f"the guest releases the primary {nic['id']}")
                self.vm.record("guest-released", primary=nic["id"])
                self.vm.model_input("guest_released", nic["id"])

    def adopt(self, source: "SimulatedGuest") -> None:
        """The guest of a migration target continues the source's guest: its
        memory (loaded modules, negotiated standbys, netdevs and their names
        and ifindexes, the kernel log) came with the migration: no link events
        for what it had. Then it meets the target's buses as they are: for a
        correct host nothing changes (the primary is still hidden); a primary a
        broken host plugged before the state arrived joins the guest here."""
        self.modules = list(source.modules)
        self.acked = dict(source.acked)
        self.netdevs = {key: dict(netdev) for key, netdev in source.netdevs.items()}
        self.kernel_log = list(source.kernel_log)
        self.next_index = source.next_index
        self.rebuild()

    def rebuild(self) -> None:
        """Recompute the guest's netdevs from what is on its bus and which
        drivers are loaded; emit link events for the differences."""
        wanted: Dict[str, dict] = {}
        masters: Dict[str, str] = {}  # MAC -> master key
        for nic in self.vm.devices:
            if nic["id"] not in self.vm.model.visible_devices or NIC_MODULES[nic["driver"]] not in self.modules:
                continue
            mac = self.vm.mac(nic["id"])
            if nic["driver"] == "virtio-net-pci":
                acked = self.acked.get(nic["id"], False)
                bits = BASE_FEATURES + ([VIRTIO_NET_F_STANDBY] if acked else [])
                if acked:
                    wanted[f"master:{nic['id']}"] = {"driver": "net_failover", "mac": mac, "parent_bus": "virtio",
                                                     "role": "master", "features": None}
                    masters[mac] = f"master:{nic['id']}"
                wanted[nic["id"]] = {"driver": "virtio_net", "mac": mac, "parent_bus": "virtio", "features": bits,
                                     "role": "standby" if acked else None, "sby": acked,
                                     "master_key": masters.get(mac) if acked else None}
        for nic in self.vm.devices:
            if nic["driver"] == "virtio-net-pci" or nic["id"] not in self.vm.model.visible_devices:
                continue
            if NIC_MODULES[nic["driver"]] not in self.modules:
                continue
            mac = self.vm.mac(nic["id"])
            wanted[nic["id"]] = {"driver": nic["driver"], "mac": mac, "parent_bus": "pci", "features": None,
                                 "role": "primary" if mac in masters else None, "master_key": masters.get(mac)}
        for key in [k for k in self.netdevs if k not in wanted]:
            gone = self.netdevs.pop(key)
            self.add("netdev-removed", {"name": gone["name"], "ifindex": gone["ifindex"]})
        for key, shape in wanted.items():
            previous_role = self.netdevs.get(key, {}).get("role")
            if key not in self.netdevs:
                name = f"eth{len(self.netdevs)}"
                self.netdevs[key] = {"name": name, "ifindex": self.next_index, **shape}
                self.next_index += 1
                self.add("netdev-added", {"name": name, "ifindex": self.netdevs[key]["ifindex"]})
            else:
                self.netdevs[key].update(shape)
                if previous_role != shape["role"]:
                    self.add("netdev-changed", {"name": self.netdevs[key]["name"], "changes": ["master"]})
            # net_failover registers a slave when it joins, also one that existed before its master.
            role = {"master": "master", "standby": "standby slave", "primary": "primary slave"}.get(shape["role"])
            if role and previous_role != shape["role"]:
                self.kernel_log.append(f"failover {role}:{self.netdevs[key]['name']} registered")

    def report(self) -> List[dict]:
        netdevs = [{"name": "lo", "ifindex": 1, "mac": "00:00:00:00:00:00", "perm_mac": None, "driver": None,
                    "parent_bus": None, "pci_address": None, "master": None, "failover_role": None,
                    "operstate": "unknown", "phys_port_name": None, "virtio_features": None,
                    "virtio_feature_bits": None, "statistics": {}}]
        for key, netdev in self.netdevs.items():
            master = self.netdevs.get(netdev.get("master_key") or "", {}).get("name")
            bits = netdev["features"]
            netdevs.append({
                "name": netdev["name"], "ifindex": netdev["ifindex"], "mac": netdev["mac"],
                "perm_mac": netdev["mac"] if netdev["parent_bus"] == "pci" else None, "driver": netdev["driver"],
                "parent_bus": netdev["parent_bus"],
                "pci_address": f"0000:0{netdev['ifindex']}:00.0" if netdev["parent_bus"] == "pci" else None,
                "master": master, "failover_role": netdev["role"], "operstate": "up",
                "phys_port_name": "sby" if netdev.get("sby") else None,
                "virtio_features": None if bits is None else "".join("1" if b in bits else "0" for b in range(64)),
                "virtio_feature_bits": bits, "statistics": {},
                # The simulated host, like QEMU, has no failover-group-id in any config space.
                **({"group_id": None, "group_id_source": None, "group_id_error": None}
                   if netdev["parent_bus"] in ("pci", "virtio") else {})})
        return netdevs


class ReferenceVm(TraceLog, ReferenceMigration):
    """The same surface as guest.Vm, over the reference model and a simulated guest.
    `incoming`: a migration target (the model in the target role) that waits,
    once started, for a source ReferenceVm to `migrate` to its migration_uri."""

    def __init__(self, spec: VmSpec, artifacts: Path, mutations: List[str], on_step=None, incoming: bool = False):
        self.spec = spec
        self.name = spec.name
        self.artifacts = artifacts
        artifacts.mkdir(parents=True, exist_ok=True)
        self.init_trace()
        self.init_migration(incoming)
        # Every declared NIC, in spec order (the simulated guest's catalogue: which NIC has
        # which MAC and driver); those on the command line are cold-plugged at start.
        self.devices = [device_spec(nic, index) for index, nic in enumerate(spec.nics)]
        self.model = vnetct_native.FailoverModel("target" if incoming else "source", None, mutations)
        self.refused = False
        self.qmp = SimulatedQmp(self)
        self.agent = SimulatedGuest(self)
        self.wire = None  # no datapath: no wire, no TAPs
        self.taps: List[str] = []
        self.spare_taps: List[str] = []
        self.tap_fds: List[int] = []
        self.process = None
        self.hello: Optional[dict] = None
        self.boot_seconds: Optional[float] = None
        self.stderr_lines: List[str] = []
        self._t0 = time.monotonic()
        self.step = on_step or (lambda text: None)

    # -- the model ---------------------------------------------------------------
    def now_ms(self) -> float:
        return (time.monotonic() - self._t0) * 1000.0

    def nic(self, device_id: str) -> dict:
        return next(d for d in self.devices if d["id"] == device_id)

    def mac(self, device_id: str) -> str:
        index = next(i for i, d in enumerate(self.devices) if d["id"] == device_id)
        return self.spec.nics[index].mac

    def model_input(self, method: str, *arguments) -> List[dict]:
        """Feeds one input to the model; returns the outputs it caused."""
        getattr(self.model, method)(*arguments, self.now_ms())
        return self.apply_outputs()

    def apply_outputs(self) -> List[dict]:
        outputs = self.model.take_outputs()
        for output in outputs:
            self.transcript("model", "in", output)
            if output["kind"] == "event":
                self.qmp.add(output["name"], output["data"])
            elif output["kind"] in ("warning", "command-error"):
                self.stderr_lines.append(f"reference-host: warning: {output['text']} [{output['rule']}]")
            elif output["kind"] == "start-error":
                self.refused = True
                self.stderr_lines.append(f"reference-host: {output['text']} [{output['rule']}]")
            elif output["kind"] in ("plugged", "unplugged"):
                self.agent.device_plugged()
        self.agent.release_requested()
        return outputs

    def record(self, kind: str, **fields) -> None:
        """As TraceLog.record, stamped strictly after the events seen so far."""
        self.trace_log.append({"t_ns": _stamp(), "kind": kind, **fields})

    # -- hot-plug (QMP device_add / device_del) ------------------------------------
    def device_add(self, arguments: dict) -> dict:
        """The model takes the declared NIC that `arguments` name (by id) as a
        hot-plug; a refusal raises HostError with the model's own words."""
        device_id = arguments.get("id", "")
        device = next((d for d in self.devices if d["id"] == device_id), None)
        if device is None:
            raise HostError(f"the command returned an error: device_add: the reference model knows no declared "
                            f"NIC with id '{device_id}' (declare it in the VmSpec with hot_plugged=True)")
        refusals = [o for o in self.model_input("hot_plug", device) if o["kind"] in ("command-error", "start-error")]
        if refusals:
            raise HostError("the command returned an error: device_add: refused by the reference model: " +
                            "; ".join(f"{o['text']} [{o['rule']}]" for o in refusals))
        return {}

    def device_del(self, device_id: str) -> dict:
        """The model takes the unplug request; the simulated guest's driver lets
        go of the device (DEVICE_DELETED follows from the model)."""
        self.model_input("device_del", device_id)
        self.agent.acked.pop(device_id, None)
        return {}

    # -- artifacts -----------------------------------------------------------------
    def transcript(self, channel: str, direction: str, message: Any) -> None:
        path = self.artifacts / f"{'qmp' if channel == 'qmp' else 'agent' if channel == 'agent' else 'model'}-{self.name}.jsonl"
        with path.open("a") as file:
            file.write(json.dumps({"t_host_ns": time.monotonic_ns(), "dir": direction, "msg": message}) + "\n")

    def artifact_paths(self) -> Dict[str, Path]:
        candidates = {f"{kind}-{self.name}": self.artifacts / f"{kind}-{self.name}.jsonl"
                      for kind in ("qmp", "agent", "model")}
        return {name: path for name, path in candidates.items() if path.exists()}

    def stderr_text(self) -> str:
        return "".join(line + "\n" for line in self.stderr_lines)

    def console_text(self) -> str:
        return ""

    def save_json(self, name: str, data: Any) -> Path:
        path = self.artifacts / name
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        return path

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        self.step(f"starting the reference host for {self.name}" + (" (migration target)" if self.incoming else ""))
        for device in device_specs(self.spec):
            self.model.cold_plug(device)
        self.record("start")
        self.model.start(self.now_ms())
        self.apply_outputs()
        if self.refused:
            self.record("start-error", text=self.stderr_text())
            raise VmStartError(f"{self.name}: the reference host refused to start: {self.stderr_text().strip()}",
                               self.stderr_text(), "refused")
        if self.incoming:
            self.listen()

    def wait_booted(self, timeout: float = 90.0) -> dict:
        self.hello = self.agent.wait_hello(timeout)
        self.boot_seconds = 0.0
        return self.hello

    def wait_exited(self, timeout: float) -> str:
        """The in-process host does not exit: it says what state it ended in."""
        return f"reference host (in process), migration {self.model.migration_state}"

    def stop(self) -> Optional[str]:
        self.unlisten()
        return "reference host stopped"

    @property
    def running(self) -> bool:
        return self.model.guest_running

    def pci_devices(self) -> List[dict]:
        devices = self.qmp.execute("query-pci")[0]["devices"]
        self.record("pci", visible=[d["qdev_id"] for d in devices if d.get("qdev_id")])
        return devices

    def pci_ids(self) -> List[str]:
        return [d["qdev_id"] for d in self.pci_devices()]

    def peripheral_ids(self) -> List[str]:
        return [entry["name"] for entry in self.qmp.execute("qom-list", {"path": "/machine/peripheral"})]

    def request(self, command: str, arguments: Optional[dict] = None, timeout: float = 30.0) -> Any:
        return self.agent.request(command, arguments, timeout=timeout)

    def report(self, timeout: float = 30.0) -> List[dict]:
        self.last_report = self.request("report", timeout=timeout)["netdevs"]
        return self.last_report

    def load_drivers(self, names=DRIVER_MODULES,
                     timeout: float = 60.0) -> List[dict]:
        if "virtio_net" in names and "virtio_net" not in self.agent.modules:
            self.record("guest-ack")  # the guest acks the standby's features while loading virtio_net
        return self.request("load-modules", {"names": list(names)}, timeout=timeout)["modules"]
