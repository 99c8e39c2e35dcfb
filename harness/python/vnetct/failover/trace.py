"""The observed failover trace of one VM, in the reference trace checker's
format (reference_impl/include/vnetct/reference_impl/trace_checker.hpp): the
devices as the model sees them, then the inputs (start, the guest's ack) and
the observations (QMP events, query-pci results, start errors, QEMU's stderr)
in host arrival order."""

from __future__ import annotations

import time
from typing import Dict, List, Optional

VIRTIO_NET_F_STANDBY = 62
MULTIFUNCTION_DRIVERS = {"igb"}  # SR-IOV capable: QEMU makes it multifunction


class TraceLog:
    """Mixed into Vm and ReferenceVm: what the harness did and saw, timed."""

    def init_trace(self) -> None:
        self.trace_log: List[dict] = []
        self.last_report: Optional[List[dict]] = None

    def record(self, kind: str, **fields) -> None:
        self.trace_log.append({"t_ns": time.monotonic_ns(), "kind": kind, **fields})


def device_spec(nic, index: int) -> dict:
    """The model's view of one declared NIC, the `index`th of its VmSpec."""
    bus = nic.bus or f"root{index + 1}"
    return {
        "id": nic.id or "", "driver": nic.driver, "failover": nic.properties.get("failover") == "on",
        "failover_pair_id": nic.properties.get("failover_pair_id", ""), "bus": bus,
        "bus_kind": "RootBus" if bus == "pcie.0" else "RootPortHotplug",
        "multifunction": nic.driver in MULTIFUNCTION_DRIVERS, "network_class": True,
    }


def device_specs(spec) -> List[dict]:
    """The model's view of a declared VM: one DeviceSpec per NIC on its command
    line. A hot-plugged NIC enters the trace with its `hot-plug` input."""
    return [device_spec(nic, index) for index, nic in enumerate(spec.nics)
            if not getattr(nic, "hot_plugged", False)]


def _standby_bits(vm) -> Dict[str, bool]:
    """Whether the guest acked bit 62 on each virtio standby, from the last
    guest report (the virtio_net netdev with the standby's MAC)."""
    acked = {}
    hot_plugged = {entry["device"].get("id") for entry in vm.trace_log if entry["kind"] == "hot-plug"}
    for nic in vm.spec.nics:
        if nic.driver != "virtio-net-pci" or not nic.id:
            continue
        if getattr(nic, "hot_plugged", False) and nic.id not in hot_plugged:
            continue  # not on the guest's bus (yet)
        netdev = next((n for n in (vm.last_report or []) if n.get("driver") == "virtio_net" and
                       n.get("mac") == nic.mac), None)
        bits = (netdev or {}).get("virtio_feature_bits") or []
        acked[nic.id] = VIRTIO_NET_F_STANDBY in bits
    return acked


def failover_trace(vm) -> dict:
    # Take in what has arrived (stamped on arrival) before reading the event lists.
    if vm.qmp is not None and not vm.qmp.closed:
        vm.qmp.pump(0.05)
    entries = []
    for logged in vm.trace_log:
        entry = {key: value for key, value in logged.items() if key != "t_ns"}
        if entry["kind"] == "guest-ack" and "standby" not in entry:
            # A bare guest-ack: every standby, with the bit from the last guest report.
            for standby, bit in _standby_bits(vm).items():
                entries.append((logged["t_ns"], {"kind": "guest-ack", "standby": standby, "standby_bit": bit}))
            continue
        entries.append((logged["t_ns"], entry))
    for event in (vm.qmp.events if vm.qmp is not None else []):
        entries.append((event["host_ns"], {"kind": "qmp-event", "name": event["name"], "data": event["data"]}))
    entries.sort(key=lambda pair: pair[0])  # stable: equal times keep the log's order
    entries = _inferred_inputs(vm, entries)
    end_ns = entries[-1][0] if entries else 0
    # QEMU's stderr lines at their arrival (vnetct.vm.stderr_tap), judged in order with the
    # events; a host without arrival times (the reference) has them count by the end.
    if not any(entry["kind"] == "start-error" for _, entry in entries):
        timed = vm.timed_stderr() if hasattr(vm, "timed_stderr") else []
        lines = timed or [(end_ns, line) for line in vm.stderr_text().splitlines()]
        stderr = [(t_ns, {"kind": "stderr", "text": line}) for t_ns, line in lines if line.strip()]
        entries = sorted(entries + stderr, key=lambda pair: pair[0])
    origin = entries[0][0] if entries else 0
    role = "target" if getattr(vm, "incoming", False) else "source"
    return {"role": role, "unplug_timeout_ms": None,
            "cancel_unplug_timeout_ms": getattr(vm, "cancel_unplug_timeout_ms", None),
            "devices": device_specs(vm.spec),
            "entries": [{"t_ms": (t - origin) / 1e6, **entry} for t, entry in entries]}


def snapshot_at_end(vm) -> None:
    """The host's last word before the trace is judged: a query-pci snapshot
    of a VM still running (a transition the host owed and no snapshot showed is
    then unmet, not unknown). A VM that has exited or hung up keeps its trace."""
    from vnetct.core.native import HostError

    if vm.qmp is None or vm.qmp.closed:
        return
    try:
        vm.pci_devices()
    except HostError as error:
        vm.step(f"{vm.name}: no end-of-case pci snapshot: {error}")


def assert_trace_conformant(case, vm) -> dict:
    """Replays the VM's whole trace so far against the reference model; fails
    the case with the first violated rule. Trace and verdict are artifacts."""
    from vnetct.core.native import vnetct_native
    from vnetct.core.verdict import RuleViolation

    trace = failover_trace(vm)
    verdict = vnetct_native.check_failover_trace(trace)
    case.save_json(f"trace-{vm.name}.json", trace)
    case.save_json(f"verdict-{vm.name}.json", verdict)
    case.metric(f"trace_entries_{vm.name}", len(trace["entries"]))
    if verdict["violation"] is not None:
        violation = verdict["violation"]
        if hasattr(case, "extra"):  # into results.json for the report
            case.extra.setdefault("violations", []).append({"vm": vm.name, **violation})
        raise RuleViolation(violation.get("rule") or [], f"{vm.name}: trace checker: {violation['message']}",
                            violation)
    return verdict


def _inferred_inputs(vm, entries: List[tuple]) -> List[tuple]:
    """Host inputs a real QEMU does not announce, placed where the observations
    prove they happened (unless the VM logged them itself, as the reference
    profile does): transfer-done on a source just before its STOP or
    MIGRATION device; incoming-loaded on a target just before its first
    FAILOVER_NEGOTIATED, RESUME or MIGRATION completed."""
    kinds = {entry["kind"] for _, entry in entries}
    incoming = getattr(vm, "incoming", False)
    result = list(entries)
    if not incoming and "migrate" in kinds and "transfer-done" not in kinds:
        for position, (t_ns, entry) in enumerate(result):
            if entry["kind"] == "qmp-event" and (entry["name"] == "STOP" or
                                                 (entry["name"] == "MIGRATION" and
                                                  (entry["data"] or {}).get("status") == "device")):
                if any(e["kind"] == "migrate" for _, e in result[:position]):
                    result.insert(position, (t_ns, {"kind": "transfer-done"}))
                    break
    if incoming and "incoming-loaded" not in kinds:
        # Only a target that resumed or completed has loaded the state; the load
        # precedes its first FAILOVER_NEGOTIATED/RESUME/completed after `active`.
        def status(entry):
            return (entry.get("data") or {}).get("status") if entry.get("name") == "MIGRATION" else None
        events = [(i, e) for i, (_, e) in enumerate(result) if e["kind"] == "qmp-event"]
        loaded = any(e["name"] == "RESUME" or status(e) == "completed" for _, e in events)
        active_at = next((i for i, e in events if status(e) == "active"), None)
        if loaded and active_at is not None:
            standbys = [standby for standby, acked in _standby_bits(vm).items() if acked]
            for position, entry in events:
                if position > active_at and (entry["name"] in ("FAILOVER_NEGOTIATED", "RESUME") or
                                             status(entry) == "completed"):
                    result.insert(position, (result[position][0], {"kind": "incoming-loaded",
                                                                   "standbys": standbys}))
                    break
    return result


def record_guest_release(vm, primary_id: str, primary_name: str, from_index: int) -> Optional[dict]:
    """The guest's evidence that it released the primary: the agent's
    netdev-removed for the primary's netdev, logged at its arrival time."""
    if any(e["kind"] == "guest-released" and e.get("primary") == primary_id for e in vm.trace_log):
        return None  # logged already (the reference profile's VM logs it itself)
    vm.agent.pump(0.05)  # take what has arrived (stamped on arrival) into the event list
    for event in vm.agent.events[from_index:]:
        if event["name"] == "netdev-removed" and event["data"].get("name") == primary_name:
            vm.trace_log.append({"t_ns": event["host_ns"], "kind": "guest-released", "primary": primary_id})
            return event
    return None


def wait_guest_release(vm, primary_id: str, primary_name: str, from_index: int, timeout: float) -> dict:
    """Waits for the agent's netdev-removed of the primary (from agent event
    `from_index` on) and logs the release into the trace at its arrival time.
    The guest's pace: a miss is a HostTimeout, not a host verdict."""
    logged = next((e for e in vm.trace_log if e["kind"] == "guest-released" and e.get("primary") == primary_id),
                  None)
    if logged is not None:  # the reference profile's VM logs it itself
        return {"host_ns": logged["t_ns"], "name": "netdev-removed", "data": {"name": primary_name}}
    vm.agent.wait_event("netdev-removed", {"name": primary_name}, from_index, timeout=timeout)
    return record_guest_release(vm, primary_id, primary_name, from_index)
