"""The run context and the one factory that owns every VM and wire of a run.

Lifecycle stages, as fixtures use them: `factory.wire(...)` (a network namespace
with an eswitch-like bridge and TAPs) -> `factory.vm(spec)` (QEMU started,
QMP connected) -> `factory.vm_booted(spec)` (guest agent said hello). At
teardown the factory stops every VM, deletes every namespace it made, and
reports anything that lingered."""

from __future__ import annotations

import dataclasses
import os
import select
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

from vnetct.vm.guest import Accelerator, Vm, VmSpec
from vnetct.core.native import vnetct_native


@dataclass
class RunContext:
    run_id: str
    short_id: str               # 6 hex chars, the per-run name prefix
    run_dir: Path
    profile: str
    qemu: str
    qemu_version: str
    accelerator: Accelerator
    image: dict
    socket_root: Path           # short path for unix sockets (108-byte limit)
    step: Callable[[str], None] = lambda text: None
    mutations: List[str] = field(default_factory=list)  # reference profile only
    vf: Optional[dict] = None   # profile vf: the prepared host (vnetct.sriov.PreparedHost.to_json)

    @property
    def netns_prefix(self) -> str:
        return f"vnetct-{self.short_id}"


class Leftovers(Exception):
    """Processes or namespaces survived teardown."""


@dataclass
class _Owned:
    vms: List[Vm] = field(default_factory=list)
    wires: List[object] = field(default_factory=list)


class VmFactory:
    def __init__(self, run: RunContext, artifacts: Path, scope_name: str):
        self.run = run
        self.artifacts = artifacts
        self.scope_name = scope_name
        self._owned = _Owned()
        self._counter = 0

    def _next(self) -> int:
        self._counter += 1
        return self._counter

    @property
    def vms(self) -> List[Vm]:
        return list(self._owned.vms)

    def wire(self, taps: int):
        index = _next_wire_index()
        if self.run.vf is not None:  # the standby's TAPs on the host's bridge (or macvtaps on the PF)
            from vnetct.sut.vf_wire import HostCarrier

            carrier = HostCarrier.create(self.run.vf, f"v{self.run.short_id}{index:x}"[:9], taps)
            self._owned.wires.append(carrier)
            return carrier
        topology = vnetct_native.Topology.create(
            netns=f"{self.run.netns_prefix}-{index}", device_prefix=f"v{self.run.short_id}{index:x}"[:9],
            taps=taps, peer_address="198.18.0.1/24")
        self._owned.wires.append(topology)
        return topology

    def vm(self, spec: VmSpec, start: bool = True, incoming: bool = False, wire=None,
           taps: Optional[List[str]] = None, tap_fds: Optional[List[int]] = None) -> Vm:
        """A VM on a wire of its own, or on `wire` with the given `taps`.
        `incoming`: a migration target waiting for the source's state."""
        if self.run.profile == "reference":
            from vnetct.sut.reference import ReferenceVm

            vm = ReferenceVm(spec, self.artifacts / spec.name, self.run.mutations,
                             on_step=lambda text: self.run.step(text), incoming=incoming)
            self._owned.vms.append(vm)
            if start:
                vm.start()
            return vm
        if self.run.vf is not None:
            from vnetct.sut.vf_wire import vf_spec

            spec = vf_spec(spec, self.run.vf, incoming)
        tap_count = sum(1 for nic in spec.nics if nic.tap)
        if wire is None and tap_count:
            wire = self.wire(tap_count)
            taps = wire.taps
        if tap_fds is None and wire is not None and getattr(wire, "fds_for", None) is not None:
            tap_fds = wire.fds_for(taps)  # macvtap: QEMU takes its queue as an fd
        sockets = self.run.socket_root / f"{spec.name}-{self._next()}"
        vm = Vm(spec, self.run.qemu, self.run.accelerator, self.run.image, sockets, self.artifacts / spec.name,
                netns=wire.netns if wire else "", taps=taps or [],
                on_step=lambda text: self.run.step(text), incoming=incoming, tap_fds=tap_fds)
        vm.wire = wire
        self._owned.vms.append(vm)
        if start:
            vm.start()
        return vm

    def migration_source(self, spec: VmSpec, timeout: float = 120.0, hand_over_taps: bool = False) -> Vm:
        """A booted VM whose wire has room for its migration target (two TAPs
        per NIC: the source keeps its TAPs open while the target opens its own);
        start_target() starts the target. `hand_over_taps`: the harness opens
        the TAP queues and gives them to QEMU as fds, and the target gets the
        same queues (one TAP per NIC, shared by both processes)."""
        if self.run.profile == "reference":
            return self.vm_booted(spec, timeout)
        tap_count = sum(1 for nic in spec.nics if nic.tap)
        if hand_over_taps:
            wire = self.wire(tap_count)
            fds = [vnetct_native.open_tap_in_netns(wire.netns, tap) for tap in wire.taps]
            source = self.vm(spec, wire=wire, taps=wire.taps, tap_fds=fds)
            source.spare_taps = []
            source.wait_booted(timeout=timeout)
            return source
        wire = self.wire(2 * tap_count)
        source = self.vm(spec, wire=wire, taps=wire.taps[:tap_count])
        source.spare_taps = wire.taps[tap_count:]
        source.wait_booted(timeout=timeout)
        return source

    def start_target(self, source: Vm, name: str, spec: Optional[VmSpec] = None) -> Vm:
        """The migration target of `source`: the same devices, its own name.
        Its TAPs are kept off the wire (link down) until connect_target_ports():
        a flooding wire would otherwise queue every frame for the guest in the
        target's TAPs while the target waits, and the target would replay that
        stale backlog when it resumes. A source that handed its TAPs over as
        fds gives the target the same queues instead. `spec`: the target's own
        devices (e.g. TAPs waiting for incoming fds) instead of the source's."""
        target_spec = dataclasses.replace(spec or source.spec, name=name)
        if self.run.profile == "reference":
            return self.vm(target_spec, incoming=True)
        if source.tap_fds:  # the same TAP queues as the source (migration_source(hand_over_taps=True))
            return self.vm(target_spec, incoming=True, wire=source.wire, taps=source.taps,
                           tap_fds=[os.dup(fd) for fd in source.tap_fds])
        set_ports(source.wire, source.spare_taps, up=False)
        return self.vm(target_spec, incoming=True, wire=source.wire, taps=source.spare_taps)


    def vm_booted(self, spec: VmSpec, timeout: float = 120.0) -> Vm:
        vm = self.vm(spec)
        vm.wait_booted(timeout=timeout)
        return vm

    def close(self) -> List[str]:
        """Stop everything this factory made; returns the problems found."""
        problems: List[str] = []
        for vm in reversed(self._owned.vms):
            pid = vm.process.pid if vm.process else None
            try:
                if getattr(vm, "wire", None) is not None and vm.process is not None:
                    try:
                        (vm.artifacts / "wire-links.txt").write_text(vm.wire.describe())
                    except Exception as error:  # noqa: BLE001 - artifact only
                        (vm.artifacts / "wire-links.txt").write_text(f"could not describe the wire: {error}\n")
                vm.stop()
            except Exception as error:  # noqa: BLE001 - keep tearing down
                problems.append(f"{vm.name}: stop failed: {error}")
            if pid is not None and _alive(pid):
                problems.append(f"{vm.name}: QEMU pid {pid} still alive after stop")
            if getattr(vm, "sockets", None) is not None:
                shutil.rmtree(vm.sockets, ignore_errors=True)
        for wire in reversed(self._owned.wires):
            try:
                wire.destroy()
            except Exception as error:  # noqa: BLE001
                problems.append(f"namespace {wire.netns}: {error}")
            if wire.netns in vnetct_native.list_netns(wire.netns):
                problems.append(f"namespace {wire.netns} still exists")
        self._owned = _Owned()
        return problems


_wire_counter = 0


def _next_wire_index() -> int:
    global _wire_counter
    _wire_counter += 1
    return _wire_counter


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return ") Z" not in stat.read()
    except OSError:
        return False


def qemu_version(qemu: str) -> str:
    try:
        result = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise FileNotFoundError(f"--qemu {qemu}: cannot run it ({error})") from error
    if result.returncode != 0 or "QEMU emulator version" not in result.stdout:
        raise FileNotFoundError(f"--qemu {qemu}: '{qemu} --version' did not print a QEMU version "
                                f"(exit {result.returncode}): {result.stdout[:200]}{result.stderr[:200]}")
    return result.stdout.splitlines()[0].replace("QEMU emulator version ", "").strip()


def leftover_processes(marker: str) -> List[str]:
    """Processes whose command line mentions `marker` (the run's socket root)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and _alive(int(entry.name)):
            found.append(f"{entry.name}: {cmdline[:120]}")
    return found


def sweep_run(run: RunContext) -> List[str]:
    """The end-of-run sweep: kill any process of the run and delete its
    namespaces; returns what it had to clean (empty when teardown was clean)."""
    cleaned = []
    for line in leftover_processes(str(run.socket_root)):
        pid = int(line.split(":", 1)[0])
        try:
            handle = os.pidfd_open(pid)
        except OSError:
            continue  # already gone
        try:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                os.kill(pid, signal.SIGKILL)
            poller = select.poll()
            poller.register(handle, select.POLLIN)
            poller.poll(10_000)  # readable once the process has exited; bounded
        except OSError:
            pass
        finally:
            os.close(handle)
        cleaned.append(f"killed {line}")
    for name in vnetct_native.sweep_netns(run.netns_prefix):
        cleaned.append(f"deleted namespace {name}")
    if run.vf is not None:  # profile vf: the standby carriers live in the host's namespace
        from vnetct.sut.vf_wire import sweep_host_links

        cleaned += [f"deleted host link {name}" for name in sweep_host_links(f"v{run.short_id}")]
    shutil.rmtree(run.socket_root, ignore_errors=True)
    return cleaned


def set_ports(wire, taps: List[str], up: bool) -> None:
    """Brings the wire's bridge ports `taps` up or down (down: the bridge
    forwards nothing into them)."""
    for tap in taps:
        status, output = vnetct_native.run_command(["ip", "-n", wire.netns, "link", "set", tap,
                                                    "up" if up else "down"], 10.0)
        if status.code != 0 or status.signal != 0:
            raise RuntimeError(f"ip -n {wire.netns} link set {tap} {'up' if up else 'down'}: {output.strip()}")


def connect_target_ports(target: Vm) -> Optional[int]:
    """Puts a migration target's TAPs on the wire (call it at the target's
    RESUME); returns the monotonic time it was done, None without a wire or
    when the target shares the source's TAPs (already on it)."""
    if getattr(target, "wire", None) is None or target.tap_fds:
        return None
    set_ports(target.wire, target.taps, up=True)
    return time.monotonic_ns()
