"""The run context and the one factory that owns every VM and wire of a run.

Lifecycle stages, as fixtures use them: `factory.wire(...)` (a network namespace
with an eswitch-like bridge and TAPs) -> `factory.vm(spec)` (QEMU started,
QMP connected) -> `factory.vm_booted(spec)` (guest agent said hello). At
teardown the factory stops every VM, deletes every namespace it made, and
reports anything that lingered."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

from vnetct.vm.guest import Vm, VmSpec
from vnetct.core import sweep
from vnetct.core.native import vnetct_native


@dataclass
class RunContext:
    run_id: str
    short_id: str               # 6 hex chars, the per-run name prefix
    run_dir: Path
    sut: object                 # the system under test (vnetct.sut.base.Sut)
    socket_root: Path           # short path for unix sockets (108-byte limit)
    step: Callable[[str], None] = lambda text: None

    @property
    def netns_prefix(self) -> str:
        return sweep.netns_prefix(self.short_id)


@dataclass
class _Owned:
    vms: List[Vm] = field(default_factory=list)
    wires: List[object] = field(default_factory=list)


class VmFactory:
    """Owns the VMs and wires of one scope (a case, or the session). What a
    VM is made of comes from the SUT (`run.sut`); the factory only declares
    and tracks."""

    def __init__(self, run: RunContext, artifacts: Path, scope_name: str):
        self.run = run
        self.sut = run.sut
        self.artifacts = artifacts
        self.scope_name = scope_name
        self._owned = _Owned()
        self._counter = 0
        self.fresh_boot: Optional[str] = None  # why this scope's guests boot instead of being restored

    def _next(self) -> int:
        self._counter += 1
        return self._counter

    @property
    def vms(self) -> List[Vm]:
        return list(self._owned.vms)

    def wire(self, taps: int):
        """A wire with `taps` TAPs, or None on a SUT without a datapath."""
        wire = self.sut.make_wire(self.run, _next_wire_index(), taps)
        if wire is not None:
            self._owned.wires.append(wire)
        return wire

    def vm(self, spec: VmSpec, start: bool = True, incoming: bool = False, wire=None,
           taps: Optional[List[str]] = None, tap_fds: Optional[List[int]] = None) -> Vm:
        """A VM on a wire of its own, or on `wire` with the given `taps`.
        `incoming`: a migration target waiting for the source's state."""
        spec = self.sut.adapt_spec(spec, incoming)
        if self.fresh_boot:
            spec = dataclasses.replace(spec, snapshot=False)
        tap_count = sum(1 for nic in spec.nics if nic.tap)
        if wire is None and tap_count:
            wire = self.wire(tap_count)
            taps = wire.taps if wire is not None else []
        if tap_fds is None and wire is not None and getattr(wire, "fds_for", None) is not None:
            tap_fds = wire.fds_for(taps)  # macvtap: QEMU takes its queue as an fd
        sockets = self.run.socket_root / f"{spec.name}-{self._next()}"
        vm = self.sut.make_vm(self.run, spec, self.artifacts / spec.name, sockets, wire, taps or [], tap_fds,
                              incoming)
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
        tap_count = sum(1 for nic in self.sut.adapt_spec(spec, False).nics if nic.tap)
        wire = self.wire(tap_count if hand_over_taps else 2 * tap_count) if tap_count else None
        if wire is None:
            return self.vm_booted(spec, timeout)
        if hand_over_taps:
            fds = [vnetct_native.open_tap_in_netns(wire.netns, tap) for tap in wire.taps]
            source = self.vm(spec, wire=wire, taps=wire.taps, tap_fds=fds)
        else:
            source = self.vm(spec, wire=wire, taps=wire.taps[:tap_count])
            source.spare_taps = wire.taps[tap_count:]
        source.wait_booted(timeout=timeout)
        return source

    def start_target(self, source: Vm, name: str, spec: Optional[VmSpec] = None) -> Vm:
        """The migration target of `source`: the same devices, its own name.
        `spec`: the target's own devices (e.g. TAPs waiting for incoming fds)
        instead of the source's."""
        from vnetct.traffic import wire_faults  # a seeded fault's wire impairments

        wire_faults.at("target-start", source)
        return self.target_of(source, dataclasses.replace(spec or source.spec, name=name))

    def target_of(self, source: Vm, target_spec: VmSpec) -> Vm:
        """A migration target of `source` with `target_spec`. Its TAPs are kept
        off the wire (link down) until connect_target_ports(): a flooding wire
        would otherwise queue every frame for the guest in the target's TAPs
        while the target waits, and the target would replay that stale backlog
        when it resumes. A source that handed its TAPs over as fds gives the
        target the same queues instead."""
        if source.wire is None:
            return self.vm(target_spec, incoming=True)
        if source.tap_fds:  # the same TAP queues as the source (migration_source(hand_over_taps=True))
            return self.vm(target_spec, incoming=True, wire=source.wire, taps=source.taps,
                           tap_fds=[os.dup(fd) for fd in source.tap_fds])
        set_ports(source.wire, source.spare_taps, up=False)
        return self.vm(target_spec, incoming=True, wire=source.wire, taps=source.spare_taps)

    def discard_uri(self, source: Vm) -> str:
        """Where `source` can migrate to when nobody loads the stream."""
        return self.sut.discard_uri(self, source)

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
            if pid is not None and sweep.alive(pid):
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


def sweep_run(run: RunContext) -> List[str]:
    """The end-of-run sweep: kill any process of the run and delete its
    namespaces; returns what it had to clean (empty when teardown was clean)."""
    cleaned = sweep.kill_processes(sweep.leftover_processes(str(run.socket_root)))
    cleaned += sweep.kill_processes(sweep.processes_in_namespaces(run.netns_prefix))
    for name in vnetct_native.sweep_netns(run.netns_prefix):
        cleaned.append(f"deleted namespace {name}")
    cleaned += run.sut.sweep(run)
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
    from vnetct.traffic import wire_faults  # a seeded fault's wire impairments

    wire_faults.at("target-ports", target)
    set_ports(target.wire, target.taps, up=True)
    return time.monotonic_ns()
