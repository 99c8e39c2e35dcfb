"""Live-TAP local migration against a real QEMU.

The series ("virtio-net: live-TAP local migration") adds a migration
parameter (`backend-transfer`, later `local`), a per-device switch (on
virtio-net, from v17 on the TAP netdev's `x-local-migration-supported`) and
a target TAP that waits for the source's fds (vnetct.livetap.series); QEMU
10.0 has none of them, found by probing the QMP schema, and the cases that
need them skip saying so.

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
from typing import Optional

import pytest

from vnetct.livetap import series as livetap_series, upstream_opinion
from vnetct.vm.guest import STANDBY_DRIVERS, Nic, VmSpec
from vnetct.vm.factory import connect_target_ports
from vnetct.livetap.tap_readings import read_link
from vnetct.failover.migration import EVENTS_ON
from vnetct.core.native import HostError, HostTimeout
from vnetct.core.verdict import RuleViolation
from vnetct.traffic.continuity import RECOVERY_MS, LossBound, undelivered, violations
from vnetct.traffic.wire import FROM_GUEST, WireCapture, decode
from vnetct.traffic.echo import EchoStream, describe_losses, phase

MAC = "52:54:00:6f:55:dd"
RATE_PPS = 1000  # 1 ms resolution; a TCG guest echoes it without loss in steady state
STEADY_S = 1.0
# Half a second of echoes must come back within this once the target started.
TARGET_WAITING_BOUND_S = 5.0


def _spec(name: str) -> VmSpec:
    return VmSpec(name, nics=[Nic("virtio-net-pci", MAC, id="net0")])


def _migrate_with_stream(vm_factory, case, name: str, hand_over_taps: bool) -> dict:
    source = vm_factory.migration_source(_spec(f"{name}-source"), hand_over_taps=hand_over_taps)
    source.load_drivers(STANDBY_DRIVERS)
    netdev = next(n for n in source.report() if n.get("mac") == MAC)
    stream = EchoStream(source, case, netdev["name"], rate_pps=RATE_PPS).start()
    capture = None
    try:
        clean_ns = stream.wait_clean(STEADY_S, settle_s=30)
        # The target starts while the stream runs: a target that touched the shared
        # queue before the switchover would show as loss in phase target-waiting.
        target_ns = time.monotonic_ns()
        if not hand_over_taps:
            # The host's view from before the target starts (a loaded host starves the
            # source's guest meanwhile) to after the switch: which datagrams the bridge
            # handed to the source's TAP and to the target's (the source's spare TAPs,
            # kept off the wire until RESUME), whether each dropped any, and which the
            # guests answered.
            dropped_before = {tap: read_link(source.wire.netns, tap).tx_dropped
                              for tap in list(source.taps) + list(source.spare_taps)}
            capture = WireCapture(source.wire.netns, list(source.taps) + list(source.spare_taps)).start()
        target = vm_factory.start_target(source, f"{name}-target")
        case.uses(source, target)
        source.qmp.execute("migrate-set-capabilities", EVENTS_ON)
        try:
            stream.wait_echoes(int(STEADY_S * RATE_PPS) // 2, TARGET_WAITING_BOUND_S)
        except HostTimeout as error:
            report = stream.stop([("settle", stream.started_ns), ("before", clean_ns), ("target-waiting", target_ns)])
            waiting = phase(report, "target-waiting")
            # LT-DATA-01's loss, seen before the switchover even began (the case's goal rule).
            raise RuleViolation(
                "LT-DATA-01",
                f"traffic stopped when the target started: {error}; {describe_losses(waiting)}. The target, "
                f"waiting for the migration with {'the same TAP queue' if hand_over_taps else 'its own TAP'}, "
                f"takes the frames meant for the running source") from None
        mark = len(source.qmp.events)
        case.step(f"migrating {source.name} to {target.name} ({'same TAP fd' if hand_over_taps else 'new TAP'})")
        if capture is not None:
            # The source's TAP until the switchover starts: after its STOP it reads no more
            # and, flooded by the bridge, drops; what it dropped before is judged below.
            dropped_at_migrate = {tap: read_link(source.wire.netns, tap).tx_dropped for tap in source.taps}
        migrate_ns = time.monotonic_ns()
        source.record("migrate")
        source.qmp.execute("migrate", {"uri": target.migration_uri})
        resume = target.qmp.wait_event("RESUME", None, 0, timeout=120)
        ports_ns = connect_target_ports(target)
        completed = source.qmp.wait_event("MIGRATION", {"status": "completed"}, mark, timeout=120)
        stream.wait_echoes(int(STEADY_S * RATE_PPS), 30)
        report = stream.stop([("settle", stream.started_ns), ("before", clean_ns), ("target-waiting", target_ns),
                              ("migration", migrate_ns), ("after", resume["host_ns"])])
        # Upstream switches a new TAP onto the network before its cont: here the TAP joins after RESUME.
        upstream_opinion.record(case, report, migrate_ns, ports_ns or resume["host_ns"], stream.sent_times(),
                                "RESUME (target)" if ports_ns is None else "the target's TAP joined the wire")
        report["latency_ms"] = stream.path_latency()
        report["sent_ns"] = stream.sent_times()
    finally:
        stream.close()
        if capture is not None:
            capture.stop()
            capture.save(case, "wire-switchover.json", keep=lambda frame: "stream_seq" not in decode(frame.head))
    if capture is not None:
        # The source's side while the target waits (its drops until the migration started);
        # the target's from its start to the end.
        report["source_delivery"] = _delivery(capture, source.taps, {tap: dropped_before[tap] for tap in source.taps},
                                              dropped_at_migrate)
        report["target_delivery"] = _delivery(capture, target.taps, {tap: dropped_before[tap] for tap in target.taps})
        for side in ("source", "target"):
            case.save_json(f"{side}-delivery.json",
                           {k: v for k, v in report[f"{side}_delivery"].items() if k != "seqs"})
    info = source.qmp.execute("query-migrate")
    report["switchover"] = _switchover_bound(source, mark, resume, ports_ns, info.get("downtime"))
    case.metric("qemu_downtime", info.get("downtime"), "ms")
    case.metric("migration_total", round((completed["host_ns"] - migrate_ns) / 1e9, 3), "s")
    if ports_ns is not None:
        case.metric("target_ports_delay", round((ports_ns - resume["host_ns"]) / 1e6, 1), "ms")
    steady = phase(report, "before")
    if steady["lost"] or steady["duplicates"]:
        raise RuleViolation("LT-DATA-01", f"steady state: {describe_losses(steady)}")
    return report


def _delivery(capture, taps, dropped_before, dropped_after: Optional[dict] = None) -> dict:
    """The stream's datagrams the bridge handed to `taps` (seen leaving by
    them, towards the guest) whose echo no TAP saw a guest send, and what
    those TAPs dropped meanwhile: with none dropped, that side's QEMU took
    every one of them and its guest never answered. An echo a guest sent and
    the wire lost stays the host's loss."""
    taps = set(taps)
    delivered, answered = set(), set()
    for frame in capture.frames():
        seq = decode(frame.head).get("stream_seq")
        if seq is None:
            continue
        if frame.direction == FROM_GUEST:
            answered.add(seq)
        elif frame.port in taps:
            delivered.add(seq)
    after = dropped_after or {tap: read_link(capture.netns, tap).tx_dropped for tap in dropped_before}
    dropped = sum(after[tap] - before for tap, before in dropped_before.items())
    return {"seqs": delivered - answered, "tap_dropped": dropped, "capture": capture.summary()}


def _switchover_bound(source, mark, resume, ports_ns, downtime_ms) -> LossBound:
    """Without a hand-off the guest runs on the source until its STOP and on
    the target from its RESUME, whose new TAP joins the wire right after (the
    harness's ports delay): the loss may start at STOP, must be over by then
    plus the take-over allowance, and last at most QEMU's downtime plus both."""
    stop = next(e for e in source.qmp.events[mark:] if e["name"] == "STOP")
    ports_ms = (ports_ns - resume["host_ns"]) / 1e6 if ports_ns is not None else 0.0
    return LossBound("migration", "STOP (source)", stop["host_ns"],
                     f"RESUME (target) + the harness's {ports_ms:.0f} ms to connect the target's TAP + "
                     f"{RECOVERY_MS:.0f} ms", resume["host_ns"] + int((ports_ms + RECOVERY_MS) * 1e6),
                     (downtime_ms or 0) + ports_ms + RECOVERY_MS,
                     "the source's guest runs until STOP, the target's from RESUME, its TAP joins the wire right "
                     f"after; the length: QEMU's downtime ({downtime_ms} ms, query-migrate) plus the TAP's delay and "
                     f"the take-over allowance (vnetct.traffic.continuity)")


def _series(vm_factory, case) -> livetap_series.Interface:
    """The series' interface in this QEMU (the case needs "live-tap-series":
    it runs only where the SUT's probe found the series)."""
    case.save_json("livetap-probe.json", vm_factory.sut.live_tap_probe())
    interface = vm_factory.sut.live_tap_interface()
    case.step(f"live-TAP series: {interface.revision}")
    return interface


@pytest.mark.rule("LT-CFG-01", "LT-DATA-01", "LT-DATA-02")
@pytest.mark.needs("live-tap-series")
def test_backend_transfer_loses_nothing(vm_factory, case):
    """The series' own hand-off: the target's TAP waits for incoming fds,
    the fds travel with the migration stream over the unix socket. What
    arrives between the source's STOP and the target's RESUME waits in the
    TAP's queue (txqueuelen 1000 = 1 s at this rate): nothing may be lost or
    doubled, and the TAP keeps its ifindex and carrier."""
    interface = _series(vm_factory, case)
    base = _spec("lt-series-source")
    source = vm_factory.migration_source(interface.source_spec(base))
    source.load_drivers(STANDBY_DRIVERS)
    netdev = next(n for n in source.report() if n.get("mac") == MAC)
    tap = source.taps[0]
    link_before = read_link(source.wire.netns, tap)
    stream = EchoStream(source, case, netdev["name"], rate_pps=RATE_PPS).start()
    try:
        clean_ns = stream.wait_clean(STEADY_S, settle_s=30)
        target = vm_factory.start_target(source, "lt-series-target", spec=interface.target_spec(base))
        case.uses(source, target)
        source.qmp.execute("migrate-set-capabilities", EVENTS_ON)
        source.qmp.execute("migrate-set-parameters", interface.parameters())
        stream.wait_echoes(int(STEADY_S * RATE_PPS) // 2, TARGET_WAITING_BOUND_S)
        migrate_ns = time.monotonic_ns()
        mark = len(source.qmp.events)
        source.record("migrate")
        source.qmp.execute("migrate", {"uri": target.migration_uri})
        resume = target.qmp.wait_event("RESUME", None, 0, timeout=120)
        source.qmp.wait_event("MIGRATION", {"status": "completed"}, mark, timeout=120)
        stream.wait_echoes(int(STEADY_S * RATE_PPS), 30)
        report = stream.stop([("settle", stream.started_ns), ("before", clean_ns), ("migration", migrate_ns),
                              ("after", resume["host_ns"])])
        upstream_opinion.record(case, report, migrate_ns, resume["host_ns"], stream.sent_times())
    finally:
        stream.close()
    link_after = read_link(source.wire.netns, tap)
    case.metric("qemu_downtime", source.qmp.execute("query-migrate").get("downtime"), "ms")
    across = [phase(report, "migration"), phase(report, "after")]
    case.metric("lost_across_migration", sum(p["lost"] for p in across))
    assert all(p["lost"] == 0 and p["duplicates"] == 0 and p["reordered"] == 0 for p in across), \
        "; ".join(describe_losses(p) for p in across)
    assert (link_after.ifindex, link_after.carrier_changes) == (link_before.ifindex, link_before.carrier_changes), \
        f"{link_before.to_json()} -> {link_after.to_json()}"


@pytest.mark.rule("LT-CFG-02")
@pytest.mark.needs("live-tap-series", "live-tap-incoming-fds")
@pytest.mark.parametrize("option,value", [pytest.param("ifname", "lt-x0", id="ifname"),
                                          pytest.param("vnet_hdr", True, id="vnet-hdr"),
                                          pytest.param("fd", "3", id="fd")])
def test_incoming_fds_refuses_conflicting_tap_options(vm_factory, case, option, value):
    """netdev_add of a TAP with incoming-fds and an option that opens or sets
    up the TAP must be refused, with an error naming the option."""
    interface = _series(vm_factory, case)
    vm = vm_factory.vm(VmSpec("lt-netdev"))
    arguments = {**interface.netdev_add_arguments("lt-in0"), option: value}
    with pytest.raises(HostError) as refused:
        vm.qmp.execute("netdev_add", arguments)
    case.step(f"netdev_add {arguments}: {refused.value}")
    assert option.replace("_", "") in str(refused.value).replace("_", "").replace("-", ""), \
        f"the refusal does not name '{option}': {refused.value}"


@pytest.mark.rule("LT-CFG-01", "LT-CFG-03")
@pytest.mark.needs("live-tap-series")
@pytest.mark.no_trace_check("the target's failed load, which ends both sides' migration, has no input time the "
                            "failover trace checker could place; LT-CFG-01/03 are judged from QMP here")
def test_target_waiting_for_fds_fails_without_transfer(vm_factory, case):
    """The target waits for incoming fds; the source does not transfer them
    (its parameter is off): the target fails the load with an error, and the
    source goes on running."""
    interface = _series(vm_factory, case)
    base = _spec("lt-series-off")
    source = vm_factory.migration_source(interface.source_spec(base))
    target = vm_factory.start_target(source, "lt-series-off-target", spec=interface.target_spec(base))
    case.uses(source, target)
    source.qmp.execute("migrate-set-capabilities", EVENTS_ON)
    source.qmp.execute("migrate-set-parameters", interface.parameters(False))
    mark = len(source.qmp.events)
    source.record("migrate")
    source.qmp.execute("migrate", {"uri": target.migration_uri})
    failed = source.qmp.wait_event("MIGRATION", {"status": "failed"}, mark, timeout=60)
    case.step(f"source: migration failed at {failed['host_ns']}")
    assert source.qmp.execute("query-status")["status"] == "running"
    info = source.qmp.execute("query-migrate")
    case.save_json("query-migrate.json", info)
    assert info.get("error-desc"), f"the failure gives no reason: {info}"


@pytest.mark.rule("LT-DATA-01")
@pytest.mark.parametrize("handoff", ["same-tap-fd", "new-tap"])
@pytest.mark.needs("datapath")
# Without the series nothing hands the TAP over: these measure what a QEMU can do
# without it (LT-DATA-01's goal), they do not judge the series' rule.
@pytest.mark.subject("exploration")
def test_local_migration_loss(vm_factory, case, handoff):
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
        if lost or duplicates:
            raise RuleViolation("LT-DATA-01", f"handing the same TAP queue over lost or doubled traffic: "
                                              f"{'; '.join(describe_losses(p) for p in across)}, {duplicates} doubled")
    else:
        # A new TAP: no hand-off, so the loss is not zero but that of one stop-and-resume
        # switch, and nothing is lost while the target waits on its own (unconnected) TAP.
        bound = report["switchover"]
        case.save_json("loss-bound.json", bound.to_json())
        # While the target waits the source alone serves the guest: what the source's TAP
        # handed to its QEMU and the guest did not answer is the source's guest's.
        waiting = _host_losses(case, report, "target-waiting", "source")
        spans = ", ".join(str(w["first_seq"]) if w["first_seq"] == w["last_seq"] else
                          f"{w['first_seq']}-{w['last_seq']}" for w in waiting[:5])
        broken = [f"target-waiting: the host answers for {sum(w['count'] for w in waiting)} of them (seq {spans}): "
                  f"{describe_losses(across[0])}"] if waiting else []
        latency = report["latency_ms"]
        for name in ("migration", "after"):
            broken += violations(_host_losses(case, report, name, "target"), bound, latency)
        if broken:
            raise RuleViolation("LT-DATA-01", "a local migration to a new TAP lost more than one switchover: "
                                              + "; ".join(broken))


def _host_losses(case, report, name: str, side: str) -> list:
    """Phase `name`'s loss windows the host answers for. A datagram the
    bridge handed to `side`'s TAP, when that TAP dropped nothing, reached
    that side's QEMU, which drops nothing it reads (it leaves a frame queued
    while the guest has no buffer): its missing echo is that guest falling
    behind (measured: right after RESUME a TCG guest on a busy host answered
    400 ms late, then not at all for 200-870 ms while the frames were seen
    leaving by the target's TAP; on a host loaded by other cases the source's
    guest lost 3 datagrams in 3 ms while the target's QEMU started; where in
    the guest they go is not measured), counted, not charged to the switch."""
    windows = phase(report, name)["loss_windows"]
    delivery = report[f"{side}_delivery"]
    if delivery["tap_dropped"]:
        return windows
    remaining = undelivered(windows, delivery["seqs"], report["sent_ns"])
    lost_in_guest = sum(w["count"] for w in windows) - sum(w["count"] for w in remaining)
    case.metric(f"lost_in_{side}_guest_{name.replace('-', '_')}", lost_in_guest)
    return remaining
