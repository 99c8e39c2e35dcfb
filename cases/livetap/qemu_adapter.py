"""Live-TAP local migration against a real QEMU.

The series ("virtio-net: live-TAP local migration") adds a migration
parameter (`backend-transfer`, later `local`), a virtio-net option and a TAP
netdev option `incoming-fds`; QEMU 10.0 has none of them, found by probing
the QMP schema, and the cases that need them skip saying so.

What works with QEMU 10 today, measured here with a real guest and a paced
UDP echo stream through a plain virtio-net NIC, migrating on the same host:
- same TAP fd: the harness opens the TAP queue and gives the source QEMU the
  fd (`-netdev tap,fd=3`); the target gets a dup of it: both processes hold
  one queue. The hope: the source stops reading at its STOP, the target reads
  from its RESUME on, what arrives in between waits in the queue. Measured:
  the waiting target already reads the queue (and drops what it reads), so
  the source's traffic stops as soon as the target starts.
- new TAP and switch: the target opens a TAP of its own, which joins the wire
  at the target's RESUME (the harness's default).
Phases: settle, before (until the target starts), target-waiting (until
migrate), migration (until the target's RESUME), after; the loss across the
migration is that of the last three."""

from __future__ import annotations

import time

import pytest

from vnetct.guest import Nic, VmSpec
from vnetct.lifecycle import connect_target_ports
from vnetct.migration import EVENTS_ON
from vnetct.native import HostTimeout
from vnetct.traffic import EchoStream, describe_losses, phase

MAC = "52:54:00:6f:55:dd"
RATE_PPS = 1000  # 1 ms resolution; a TCG guest echoes it without loss in steady state
STEADY_S = 1.0
# Half a second of echoes must come back within this once the target started.
TARGET_WAITING_BOUND_S = 5.0


def probe_livetap(vm) -> dict:
    """What the QEMU behind `vm` offers of the series, from its QMP schema and
    virtio-net's properties."""
    schema = vm.qmp.execute("query-qmp-schema")
    by_name = {entity["name"]: entity for entity in schema}
    command = next((e for e in schema if e.get("meta-type") == "command" and e["name"] == "migrate-set-parameters"),
                   None)
    parameters = set()
    if command is not None:
        parameters = {m.get("name") for m in by_name.get(command["arg-type"], {}).get("members", [])}
    members = {m.get("name") for e in schema for m in e.get("members", []) or []}
    properties = {p["name"] for p in vm.qmp.execute("device-list-properties", {"typename": "virtio-net-pci"})}
    found = {"migration parameter backend-transfer": "backend-transfer" in parameters,
             "migration parameter local": "local" in parameters,
             "tap option incoming-fds": "incoming-fds" in members,
             "virtio-net property backend-transfer": "backend-transfer" in properties}
    found["supported"] = ((found["migration parameter backend-transfer"] or found["migration parameter local"])
                          and found["tap option incoming-fds"])
    return found


def _spec(name: str) -> VmSpec:
    return VmSpec(name, nics=[Nic("virtio-net-pci", MAC, id="net0")])


def _migrate_with_stream(vm_factory, case, name: str, hand_over_taps: bool) -> dict:
    source = vm_factory.migration_source(_spec(f"{name}-source"), hand_over_taps=hand_over_taps)
    source.load_drivers(["failover", "net_failover", "virtio_net"])
    netdev = next(n for n in source.report() if n.get("mac") == MAC)
    stream = EchoStream(source, case, netdev["name"], rate_pps=RATE_PPS).start()
    try:
        clean_ns = stream.wait_clean(STEADY_S, 30)
        # The target starts while the stream runs: a target that touched the shared
        # queue before the switchover would show as loss in phase target-waiting.
        target_ns = time.monotonic_ns()
        target = vm_factory.start_target(source, f"{name}-target")
        case.uses(source, target)
        source.qmp.execute("migrate-set-capabilities", EVENTS_ON)
        try:
            stream.wait_echoes(int(STEADY_S * RATE_PPS) // 2, TARGET_WAITING_BOUND_S)
        except HostTimeout as error:
            report = stream.stop([("settle", stream.started_ns), ("before", clean_ns), ("target-waiting", target_ns)])
            waiting = phase(report, "target-waiting")
            raise AssertionError(
                f"traffic stopped when the target started: {error}; {describe_losses(waiting)}. The target, "
                f"waiting for the migration with {'the same TAP queue' if hand_over_taps else 'its own TAP'}, "
                f"takes the frames meant for the running source") from None
        mark = len(source.qmp.events)
        case.step(f"migrating {source.name} to {target.name} ({'same TAP fd' if hand_over_taps else 'new TAP'})")
        migrate_ns = time.monotonic_ns()
        source.qmp.execute("migrate", {"uri": target.migration_uri})
        resume = target.qmp.wait_event("RESUME", None, 0, timeout=120)
        ports_ns = connect_target_ports(target)
        completed = source.qmp.wait_event("MIGRATION", {"status": "completed"}, mark, timeout=120)
        stream.wait_echoes(int(STEADY_S * RATE_PPS), 30)
        report = stream.stop([("settle", stream.started_ns), ("before", clean_ns), ("target-waiting", target_ns),
                              ("migration", migrate_ns), ("after", resume["host_ns"])])
    finally:
        stream.close()
    info = source.qmp.execute("query-migrate")
    case.metric("qemu_downtime", info.get("downtime"), "ms")
    case.metric("migration_total", round((completed["host_ns"] - migrate_ns) / 1e9, 3), "s")
    if ports_ns is not None:
        case.metric("target_ports_delay", round((ports_ns - resume["host_ns"]) / 1e6, 1), "ms")
    steady = phase(report, "before")
    assert steady["lost"] == 0 and steady["duplicates"] == 0, f"steady state: {describe_losses(steady)}"
    return report


@pytest.mark.rule("LT-CFG-01")
def test_backend_transfer_loses_nothing(vm_factory, case):
    if vm_factory.run.profile == "reference":
        pytest.skip("the reference profile has no QEMU to probe")
    probe = vm_factory.vm(VmSpec("livetap-probe"))
    found = probe_livetap(probe)
    case.save_json("livetap-probe.json", found)
    if not found["supported"]:
        missing = ", ".join(name for name, present in found.items() if name != "supported" and not present)
        pytest.skip(f"this QEMU lacks the live-TAP series: no {missing} (query-qmp-schema, "
                    f"device-list-properties virtio-net-pci)")
    pytest.fail("this QEMU has the live-TAP series; driving it is not implemented yet: " + str(found))


@pytest.mark.rule("LT-DATA-01")
@pytest.mark.parametrize("handoff", [
    pytest.param("same-tap-fd", marks=pytest.mark.finding(
        "QEMU 10.0: a migration target started with the source's TAP fd reads and drops the shared queue while "
        "it waits for the state: the running source's traffic stops")),
    "new-tap"])
def test_local_migration_loss(vm_factory, case, handoff):
    if vm_factory.run.profile == "reference":
        pytest.skip("the reference profile has no datapath")
    report = _migrate_with_stream(vm_factory, case, f"lt-{handoff}", hand_over_taps=handoff == "same-tap-fd")
    across = [phase(report, "target-waiting"), phase(report, "migration"), phase(report, "after")]
    case.metric("lost_target_waiting", across[0]["lost"])
    lost = sum(p["lost"] for p in across)
    duplicates = sum(p["duplicates"] for p in across)
    case.metric("lost_across_migration", lost)
    case.metric("duplicates_across_migration", duplicates)
    case.metric("longest_loss_window", round(max(p["longest_loss_window_ms"] for p in across), 1), "ms")
    if handoff == "same-tap-fd":
        # One queue for both processes: what arrives between the source's STOP and the
        # target's RESUME waits in it (txqueuelen 1000 frames = 1 s at this rate).
        assert lost == 0 and duplicates == 0, \
            f"handing the same TAP queue over lost or doubled traffic: {'; '.join(describe_losses(p) for p in across)}, " \
            f"{duplicates} duplicated"
