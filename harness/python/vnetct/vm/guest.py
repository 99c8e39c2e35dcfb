"""Guests under test: a declarative VM spec, the QEMU argv built from it, and
the VM object that owns one QEMU process, its QMP and guest agent clients and
its artifacts. Only the factory in `vm/factory.py` creates VMs, so every QEMU
has one owner that always reaps it."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from vnetct.vm.console import ConsoleScanner, tail_text
from vnetct.vm.stderr_tap import StderrTap
from vnetct.core.native import HostError, HostTimeout, vnetct_native
from vnetct.failover.trace import TraceLog

AGENT_PORT_NAME = "org.vnetct.agent"
CONSOLE_FAILURE = re.compile(r"Kernel panic|vnetct-init: agent exited|KVM internal error|"
                             r"emulation failure|end trace")
# The guest's NIC drivers, in load order (each module's depends= first).
STANDBY_DRIVERS = ("failover", "net_failover", "virtio_net")
PRIMARY_DRIVERS = ("dca", "i2c_algo_bit", "igb", "e1000e")
# SR-IOV VF drivers (profile vf) with their dependencies, in load order.
VF_DRIVERS = ("libeth", "libie", "iavf", "ixgbevf", "igbvf", "pci_hyperv_intf", "mlxfw", "mlx5_core", "bnxt_en")
DRIVER_MODULES = STANDBY_DRIVERS + PRIMARY_DRIVERS


@dataclass
class Nic:
    """One guest NIC. `bus=None` gives it a pcie-root-port of its own."""
    driver: str
    mac: str
    id: Optional[str] = None
    bus: Optional[str] = None
    properties: Dict[str, str] = field(default_factory=dict)
    tap: bool = True  # backed by a TAP of the VM's wire
    # Declared but not on the command line: a case adds it at run time with
    # netdev_add + device_add (vnetct.failover.hotplug). Its pcie-root-port and its TAP
    # exist from the start, as for any other NIC.
    hot_plugged: bool = False
    # Further options of its TAP netdev, on a source and a target alike (the live-TAP
    # series' per-netdev switch, vnetct.livetap.series).
    netdev_properties: Dict[str, str] = field(default_factory=dict)
    # A migration target's TAP that waits for the source's open fds (the live-TAP
    # series): these options instead of the ones that open a TAP, so no ifname, fd or
    # vnet_hdr (LT-CFG-02); vnetct.livetap.series builds them. None: opened as usual.
    incoming_fds: Optional[Dict[str, str]] = None


@dataclass
class VmSpec:
    name: str
    nics: List[Nic] = field(default_factory=list)
    memory_mb: int = 512
    machine: str = "q35"
    extra_args: List[str] = field(default_factory=list)
    kernel_args: List[str] = field(default_factory=list)  # appended to the guest's command line
    # An incoming target sets these migration parameters before migrate-incoming.
    incoming_parameters: Dict[str, Any] = field(default_factory=dict)
    # Restored from a snapshot of its booted guest where the SUT keeps them (vnetct.vm.snapshot);
    # False: always booted (a probe that needs no guest, a case that judges the boot itself).
    snapshot: bool = True

    def root_ports(self) -> List[str]:
        return [f"root{index + 1}" for index, nic in enumerate(self.nics) if nic.bus is None]


class VmStartError(Exception):
    """QEMU refused to start or exited before the guest was up."""

    def __init__(self, message: str, stderr: str = "", exit_status: Optional[str] = None):
        super().__init__(message)
        self.stderr = stderr
        self.exit_status = exit_status


class NoMoreEvents(HostTimeout):
    """A wait that found nothing, from an event source that knows nothing more
    will come until the harness acts (the reference SUT is synchronous): a
    waiting loop can stop at once instead of running out its deadline."""


class GuestFailure(Exception):
    """The guest died or reported a failure on its console."""


@dataclass
class Accelerator:
    name: str            # "kvm" or "tcg"
    reason: str          # why this one
    cpu: str             # "-cpu" value

    def to_json(self) -> dict:
        return {"name": self.name, "reason": self.reason, "cpu": self.cpu}


def build_argv(spec: VmSpec, qemu: str, accel: Accelerator, image: dict, sockets: Path, artifacts: Path,
               taps: List[str], incoming: Optional[str] = None, tap_fds: bool = False) -> List[str]:
    """The QEMU command line for `spec`. Every property list goes through the
    native argv builder, which escapes commas. `incoming`: a migration target
    listening on that URI (it runs, without -S, once the state has arrived).
    `tap_fds`: the TAPs come as open fds 3, 4, ... (`-netdev tap,fd=N`), in
    NIC order, instead of being opened by name."""
    option = vnetct_native.option_list
    argv = [qemu, "-name", spec.name, *([] if incoming else ["-S"]), "-no-user-config", "-nodefaults",
            "-display", "none",
            "-accel", accel.name, "-cpu", accel.cpu, "-machine", spec.machine, "-m", str(spec.memory_mb),
            "-smp", "1", "-no-reboot",
            "-kernel", image["kernel"], "-initrd", image["initramfs"],
            "-append", " ".join(["console=ttyS0 panic=-1 loglevel=6", *spec.kernel_args]),
            "-chardev", option("file", [("id", "console"), ("path", str(artifacts / f"serial-{spec.name}.log"))]),
            "-serial", "chardev:console",
            "-chardev", option("socket", [("id", "qmp"), ("path", str(sockets / "qmp.sock")),
                                          ("server", "on"), ("wait", "off")]),
            "-mon", "chardev=qmp,mode=control",
            "-chardev", option("socket", [("id", "agent"), ("path", str(sockets / "agent.sock")),
                                          ("server", "on"), ("wait", "off")]),
            "-device", option("virtio-serial-pci", [("id", "agentbus")]),
            "-device", option("virtserialport", [("chardev", "agent"), ("name", AGENT_PORT_NAME)])]
    port = 0
    tap_index = 0
    for index, nic in enumerate(spec.nics):
        bus = nic.bus
        if bus is None:
            port += 1
            bus = f"root{index + 1}"
            argv += ["-device", option("pcie-root-port", [("id", bus), ("chassis", str(port)), ("slot", str(port))])]
        if nic.hot_plugged:
            tap_index += 1 if nic.tap else 0  # its TAP waits for netdev_add
            continue
        if nic.driver == "vfio-pci":  # a host device (profile vf): no netdev, its MAC is set through the PF
            properties = [("host", nic.properties["host"]), *([("id", nic.id)] if nic.id is not None else []),
                          ("bus", bus), *((k, v) for k, v in nic.properties.items() if k != "host")]
            argv += ["-device", option("vfio-pci", properties)]
            continue
        netdev = f"hn{index}"
        if nic.tap:
            # With fd= QEMU takes the queue as it is (it reads IFF_VNET_HDR from it): no vnet_hdr option.
            source = [("fd", str(3 + tap_index))] if tap_fds else [("ifname", taps[tap_index]), ("script", "no"),
                                                                   ("downscript", "no"), ("vnet_hdr", "on")]
            if nic.incoming_fds is not None and incoming:
                source = list(nic.incoming_fds.items())
            argv += ["-netdev", option("tap", [("id", netdev), *source, *nic.netdev_properties.items()])]
            tap_index += 1
        else:
            argv += ["-netdev", option("hubport", [("id", netdev), ("hubid", str(index))])]
        properties = [("netdev", netdev)]
        if nic.id is not None:
            properties.append(("id", nic.id))
        properties += [("mac", nic.mac), ("bus", bus)]
        properties += list(nic.properties.items())
        if nic.driver in ("e1000e", "igb", "e1000"):
            properties.append(("romfile", ""))
        argv += ["-device", option(nic.driver, properties)]
    argv += spec.extra_args
    if incoming:
        argv += ["-incoming", incoming]
    return argv


def flatten_pci(buses: Iterable[dict]) -> List[dict]:
    """query-pci's tree as a flat list of devices (bridges' children included)."""
    devices: List[dict] = []
    for bus in buses:
        for device in bus.get("devices", []):
            devices.append(device)
            bridge = device.get("pci_bridge")
            if bridge and "bus" in bridge:
                devices += flatten_pci([{"devices": bridge.get("devices", [])}])
    return devices


def guest_event_host_ns(events: List[dict], index: int) -> int:
    """When the guest agent's event `events[index]` happened, on the host's
    clock, as late as the evidence allows: its arrival, or earlier where a
    later event shows the report was held back. The agent stamps each event
    with the guest's CLOCK_MONOTONIC (t_guest_ns); a stalled guest sends
    several at once (seen: a netdev-added and the link-up the guest stamped
    204 ms later arrived in one read). An event reported at host time H and
    stamped g' bounds every earlier event stamped g: it happened by
    H - (g' - g), because the guest's clock does not run faster than the
    host's (it stops while the VM is stopped). The result is never earlier
    than the event: a bound placed on it stays sound."""
    event = events[index]
    stamp = event["data"].get("t_guest_ns")
    best = event["host_ns"]
    if not isinstance(stamp, int):
        return best
    for later in events[index + 1:]:
        later_stamp = later["data"].get("t_guest_ns")
        if isinstance(later_stamp, int) and later_stamp >= stamp:
            best = min(best, later["host_ns"] - (later_stamp - stamp))
    return best


class Vm(TraceLog):
    """One QEMU process, with its QMP and guest agent clients and artifacts."""

    # The host's bound on the wait for the guest's release after a cancel in
    # wait-unplug: QEMU's qemu_savevm_wait_unplug polls 120 times every 250 ms
    # once the migration is cancelling (there is no bound in wait-unplug itself).
    cancel_unplug_timeout_ms = 30_000

    def __init__(self, spec: VmSpec, qemu: str, accel: Accelerator, image: dict, sockets: Path, artifacts: Path,
                 wire=None, taps: Optional[List[str]] = None, on_step=None, incoming: bool = False,
                 tap_fds: Optional[List[int]] = None):
        self.init_trace()
        self.spec = spec
        self.name = spec.name
        self.qemu = qemu
        self.accel = accel
        self.image = image
        self.sockets = sockets
        self.artifacts = artifacts
        self.wire = wire            # the wire its TAPs are on (the factory owns it), or None
        self.netns = wire.netns if wire is not None else ""
        self.taps = taps or []
        self.spare_taps: List[str] = []  # TAPs of its wire kept for its migration target
        self.process = None
        self.qmp = None
        self.agent = None
        self.hello: Optional[dict] = None
        self.started_at: Optional[float] = None
        self.boot_seconds: Optional[float] = None
        self.step = on_step or (lambda text: None)
        self.incoming = incoming
        self.migration_uri = f"unix:{sockets / 'migrate.sock'}"
        sockets.mkdir(parents=True, exist_ok=True)
        artifacts.mkdir(parents=True, exist_ok=True)
        # Open TAP queues handed to QEMU (`fd=`): this Vm owns these copies and closes them at stop.
        self.tap_fds: List[int] = list(tap_fds or [])
        self.closers: List[Any] = []  # run at stop (a seeded fault's QMP interposer)
        self.stderr_tap: Optional[StderrTap] = None
        # Set by the SUT: restore this VM from a snapshot instead of booting it (vnetct.vm.snapshot).
        self.snapshot_plan = None
        self.restored: Optional[dict] = None  # how the restore went, once restored
        self.ready_seconds: Optional[float] = None  # QMP's greeting -> the agent's hello
        self.argv = build_argv(spec, qemu, accel, image, sockets, artifacts, self.taps,
                               incoming="defer" if incoming else None, tap_fds=bool(self.tap_fds))

    # -- artifacts ---------------------------------------------------------
    @property
    def qmp_transcript(self) -> Path:
        return self.artifacts / f"qmp-{self.name}.jsonl"

    @property
    def agent_transcript(self) -> Path:
        return self.artifacts / f"agent-{self.name}.jsonl"

    @property
    def serial_log(self) -> Path:
        return self.artifacts / f"serial-{self.name}.log"

    @property
    def boot_serial_log(self) -> Path:
        """A restored VM's boot: the serial console of its snapshot's saver."""
        return self.artifacts / f"boot-serial-{self.name}.log"

    @property
    def stderr_log(self) -> Path:
        return self.artifacts / f"qemu-{self.name}.stderr"

    def artifact_paths(self) -> Dict[str, Path]:
        """The VM's artifacts that exist now (a QEMU that refused to start has
        no agent transcript, for instance)."""
        candidates = {f"qmp-{self.name}": self.qmp_transcript, f"agent-{self.name}": self.agent_transcript,
                      f"serial-{self.name}": self.serial_log, f"boot-serial-{self.name}": self.boot_serial_log,
                      f"qemu-stderr-{self.name}": self.stderr_log,
                      f"argv-{self.name}": self.artifacts / f"argv-{self.name}.txt",
                      f"wire-{self.name}": self.artifacts / "wire-links.txt"}
        return {name: path for name, path in candidates.items() if path.exists()}

    def stderr_text(self) -> str:
        if self.stderr_tap is not None:
            self.stderr_tap.flush()
        try:
            return self.stderr_log.read_text(errors="replace")
        except OSError:
            return ""

    def timed_stderr(self) -> List[tuple]:
        """(arrival CLOCK_MONOTONIC ns, line) of QEMU's stderr so far."""
        if self.stderr_tap is None:
            return []
        self.stderr_tap.flush()
        return list(self.stderr_tap.lines)

    def console_text(self) -> str:
        """The end of the serial log (its last 64 KiB: the guest may flood it)."""
        return tail_text(self.serial_log)

    # -- lifecycle -----------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        """Spawn QEMU (paused), connect QMP and the agent socket, then let the
        guest run. Raises VmStartError if QEMU exits first. A VM with a
        snapshot plan is restored instead of booted (vnetct.vm.snapshot): it
        runs from the snapshot's booted guest, its agent has said hello."""
        (self.artifacts / f"argv-{self.name}.txt").write_text(
            " ".join(vnetct_native.shell_quote(a) for a in self.argv) + "\n")
        if self.snapshot_plan is not None and not self.incoming:
            self._start_restored(timeout)
            return
        self.step(f"starting QEMU for {self.name}" + (" (migration target)" if self.incoming else ""))
        self.started_at = time.monotonic()
        self.record("start")
        self.stderr_tap = StderrTap(self.sockets / "stderr.fifo", self.stderr_log)
        self.process = vnetct_native.Process.spawn(self.argv, "/dev/null", str(self.stderr_tap.fifo), self.netns,
                                                   self.tap_fds)
        deadline = time.monotonic() + timeout
        self.qmp = self.connect_qmp(self.qmp_transcript, timeout)
        self.greeted_at = time.monotonic()
        self.agent = vnetct_native.GuestAgentClient.connect(str(self.sockets / "agent.sock"),
                                                            str(self.agent_transcript),
                                                            timeout=max(1.0, deadline - time.monotonic()))
        if self.incoming:
            # Events on before listening, so that the target reports every state from setup on.
            self.qmp.execute("migrate-set-capabilities",
                             {"capabilities": [{"capability": "events", "state": True}]})
            if self.spec.incoming_parameters:
                self.qmp.execute("migrate-set-parameters", self.spec.incoming_parameters)
            self.record("incoming")  # waits for the migration stream; runs when it has arrived
            self.qmp.execute("migrate-incoming", {"uri": self.migration_uri})
        else:
            self.qmp.execute("cont")

    def _start_restored(self, timeout: float) -> None:
        """The guest from its snapshot; the trace starts here, as a boot's starts at `start`."""
        from vnetct.vm import snapshot

        self.restored = snapshot.restore(self, self.snapshot_plan, timeout)
        self.qmp = self.connect_qmp(self.qmp_transcript, timeout)
        self.init_trace()
        self.record("start")
        # What QEMU said while starting (device warnings; a boot has them after its start too) counts
        # from the start of the trace.
        self.stderr_tap.restamp(self.trace_log[0]["t_ns"])
        self.qmp.execute("cont")
        self.hello = self.request("hello", {"set_realtime_ns": time.time_ns()}, timeout=timeout)
        self.boot_seconds = time.monotonic() - self.started_at
        self.ready_seconds = self.boot_seconds - self.restored["greeting_s"]
        self.restored["ready_s"] = round(self.ready_seconds, 3)
        self.step(f"{self.name} restored: agent ready {self.ready_seconds:.2f} s after QMP's greeting")

    def connect_qmp(self, transcript: Path, timeout: float):
        """A QMP connection to this VM's QEMU (retried until its socket answers)."""
        deadline = time.monotonic() + timeout
        while True:
            self._raise_if_exited("before QMP answered")
            try:
                return vnetct_native.QmpClient.connect(str(self.sockets / "qmp.sock"), str(transcript), timeout=0.5)
            except HostTimeout:
                if time.monotonic() > deadline:
                    raise VmStartError(f"{self.name}: QMP socket did not answer within {timeout:.0f} s",
                                       self.stderr_text())
            except HostError:
                # QEMU hung up: give it a moment to exit so its stderr explains why.
                try:
                    self.process.wait(timeout=5.0)
                except HostTimeout:
                    pass
                self._raise_if_exited("before QMP answered")
                raise

    def _raise_if_exited(self, when: str) -> None:
        status = self.process.poll() if self.process else None
        if status is not None:
            self.record("start-error", text=self.stderr_text())
            raise VmStartError(f"{self.name}: QEMU {status.describe()} {when}: {self.stderr_text().strip()}",
                               self.stderr_text(), status.describe())

    def wait_booted(self, timeout: float = 90.0) -> dict:
        """Wait for the agent's hello; fail early on a console failure pattern
        or a QEMU exit."""
        if self.restored is not None:
            return self.hello  # restored from a snapshot: its agent said hello in start()
        self.step(f"booting {self.name} (waiting for the guest agent)")
        deadline = time.monotonic() + timeout
        console = ConsoleScanner(self.serial_log, CONSOLE_FAILURE)
        while True:
            try:
                self.hello = self.agent.wait_hello(timeout=0.5)
                break
            except HostTimeout:
                pass
            except HostError:
                # The agent socket hung up: QEMU is probably exiting; say why.
                try:
                    self.process.wait(timeout=5.0)
                except HostTimeout:
                    pass
                self._raise_if_exited("while the guest booted")
                raise
            self._raise_if_exited("while the guest booted")
            match = console.search()
            if match:
                tail = "\n".join(self.console_text().splitlines()[-15:])
                raise GuestFailure(f"{self.name}: console shows '{match.group(0)}' while booting:\n{tail}")
            if time.monotonic() > deadline:
                tail = "\n".join(self.console_text().splitlines()[-10:])
                raise HostTimeout(f"{self.name}: no hello from the guest agent within {timeout:.0f} s; "
                                  f"console tail:\n{tail}")
        self.boot_seconds = time.monotonic() - self.started_at
        self.ready_seconds = time.monotonic() - self.greeted_at
        return self.hello

    def wait_exited(self, timeout: float) -> str:
        """How QEMU ended (it exits by itself, e.g. after a failed incoming
        migration), or "still running" after `timeout`."""
        try:
            return self.process.wait(timeout=timeout).describe()
        except HostError:
            return "still running"

    def stop(self) -> Optional[str]:
        """Quit QEMU (QMP quit, then SIGTERM/SIGKILL to its group); always reaps.
        Closes the harness's copies of the TAP queues handed to it."""
        for fd in self.tap_fds:
            os.close(fd)
        self.tap_fds = []
        while self.closers:
            self.closers.pop()()
        if self.process is None:
            return None
        if self.qmp is not None and self.process.poll() is None:
            try:
                self.qmp.execute("quit", timeout=5.0)
            except HostError:
                pass  # it may close the socket before answering
        status = self.process.terminate(grace=5.0)
        self.process = None
        if self.stderr_tap is not None:
            self.stderr_tap.close()  # keeps its lines for the trace
        return status.describe()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- QMP helpers -----------------------------------------------------------
    def pci_devices(self) -> List[dict]:
        devices = flatten_pci(self.qmp.execute("query-pci"))
        self.record("pci", visible=[d["qdev_id"] for d in devices if d.get("qdev_id")])
        return devices

    def pci_ids(self) -> List[str]:
        return [device["qdev_id"] for device in self.pci_devices() if device.get("qdev_id")]

    def peripheral_ids(self) -> List[str]:
        """Ids of the realized user-created devices (hidden primaries are not realized)."""
        return [entry["name"] for entry in self.qmp.execute("qom-list", {"path": "/machine/peripheral"})
                if entry.get("type", "").startswith("child<")]

    # -- guest agent helpers ---------------------------------------------------
    def request(self, command: str, arguments: Optional[dict] = None, timeout: float = 30.0) -> Any:
        return self.agent.request(command, arguments, timeout=timeout)

    def report(self, timeout: float = 30.0) -> List[dict]:
        self.last_report = self.request("report", timeout=timeout)["netdevs"]
        return self.last_report

    def save_json(self, name: str, data: Any) -> Path:
        path = self.artifacts / name
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        return path

    def load_drivers(self, names: Iterable[str] = DRIVER_MODULES, timeout: float = 60.0) -> List[dict]:
        names = list(names)
        if "virtio_net" in names and not any(e.get("kind") == "guest-ack" for e in self.trace_log):
            self.record("guest-ack")  # the guest acks the standby's features while loading virtio_net
        return self.request("load-modules", {"names": names}, timeout=timeout)["modules"]
