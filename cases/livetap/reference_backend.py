"""Live-TAP local migration against the REFERENCE backend (reference_impl/
livetap, the `livetap_backend` processes): real TAPs on the wire's bridge,
the real kernel, a paced sequence-numbered UDP stream from the wire's peer
that the backend echoes as a guest NIC would. No QEMU.

Sequence numbers judge (lost, duplicated, reordered per flow; the target's
first datagram follows its predecessor's last); the TAP's kernel counters
(tx_packets = frames read, tx_dropped, carrier_changes, ifindex) are the
second witness, and the backend's own record (frames read per flow) makes the
loss count exact: every datagram the peer misses is one no reader ever read.

The negative controls break LT-DATA-01 on purpose (close and reopen, detach
and attach, a blackout beyond txqueuelen / rate); they pass when the harness
reports the loss, with its exact count."""

from __future__ import annotations

import dataclasses
import os
import statistics
import time

import pytest

from vnetct.core.verdict import require
from vnetct.livetap.bench import fields
from vnetct.livetap.tap_readings import ip_in, wire_drops
from vnetct.livetap.bench import describe_flows as _describe
from vnetct.livetap.bench import per_flow_checks as _per_flow_checks
from vnetct.livetap.bench import quiet_reading as _quiet_reading
from vnetct.livetap.bench import reader_counters
from vnetct.livetap.sink import analyze_read, wait_read_through

# These cases judge vnetct's own reference backend, not the SUT; it needs real TAPs,
# processes and traffic.
pytestmark = [pytest.mark.subject("reference"), pytest.mark.needs("datapath")]

SMALL, MTU = 64, 1472  # UDP payload bytes: 106- and 1514-byte frames
STEADY_S = 0.2         # traffic before the first hand-off
HOP_SPACING_S = 0.15   # between hand-offs
TAIL_S = 0.2           # after the last
HOPS = 3               # source -> target 1 -> target 2 -> target 3


def _tap(bench, queues: int, **source_options):
    """The source on the wire's persistent single-queue TAP, or on a
    multi-queue TAP of its own (non-persistent, put on the bridge)."""
    bench.make_wire()
    if queues == 1 and not source_options.pop("own", False):
        tap = bench.wire.taps[0]
        source, state = bench.source(tap, **source_options)
    else:
        tap = bench.own_tap_name()
        source, state = bench.source(tap, queues=queues, **source_options)
        bench.join_wire(tap)
    return tap, source, state


# By default 10k and 100k pps; VNETCT_LIVETAP_RATES names others: a rate ("50k": both frame
# sizes) or a rate and frame size ("100k-small"). From 50k pps the backends are sinks: they
# count the stream by seq without echoing it (vnetct.livetap.sink), half the work per frame:
# echoed, this two-core host did not carry 100k pps even idle (small frames passed 3 of 4
# variant runs, MTU frames, 1.2 Gbit/s each way, dropped 7 130-7 482 frames a variant). The
# 10k variants stay echoed: the peer's own view of the path, there and back. At 100k pps the
# bench (injector, veth, bridge, reader) still needs the two cores to itself: TCG guests
# beside it starve it, so the 100k variants run in the run's CPU-quiet slot
# (vnetct.core.quiet: no other case runs meanwhile, in any lane).
# How long the TAP's queue holds the stream while its reader is off the CPU: a host's
# scheduling jitter, not a hand-off. Measured here (idle machine, 100k pps): with the
# default 1000 frames (10 ms) the TAP dropped 4 242-25 662 frames per variant in steady
# state, with the old backend as with the new one, and none around the hand-offs; with
# 20 000 frames (200 ms) the four 100k variants lost nothing. A hand-off's blackout is
# measured apart (blackout_us), and one beyond the queue's capacity is reported as such.
JITTER_BUDGET_S = 0.2
DEFAULT_RATES = "10k,100k"
RATES_ASKED = {part.strip().lower() for part in os.environ.get("VNETCT_LIVETAP_RATES", DEFAULT_RATES).split(",")}
QUIET_FROM_PPS = 100_000
SINK_FROM_PPS = 50_000


def _queue_for(bench, tap: str, rate: int) -> None:
    """The TAP's txqueuelen raised to hold JITTER_BUDGET_S of the stream (never lowered)."""
    frames = int(rate * JITTER_BUDGET_S)
    if bench.link(tap).txqlen < frames:
        ip_in(bench.netns, ["link", "set", tap, "txqueuelen", str(frames)])


def _variant(rate: int, queues: int, name: str, payload: int):
    label = f"{rate // 1000}k"
    marks = [] if {label, f"{label}-{name}"} & RATES_ASKED else [pytest.mark.skip(
        reason=f"{label} pps with {name} frames is not in VNETCT_LIVETAP_RATES (default {DEFAULT_RATES})")]
    if rate >= QUIET_FROM_PPS:
        marks.append(pytest.mark.cpu_quiet(f"{label} pps: TCG guests beside the bench would starve it"))
    return pytest.param(rate, queues, payload, id=f"{label}pps-{queues}queue-{name}", marks=marks)


HANDOFF_VARIANTS = [_variant(rate, queues, name, payload) for rate in (10_000, 50_000, 100_000) for queues in (1, 2)
                    for name, payload in (("small", SMALL), ("mtu", MTU))]


@pytest.mark.rule("LT-DATA-01", "LT-XFER-02")
@pytest.mark.parametrize("rate,queues,payload", HANDOFF_VARIANTS)
def test_handoff_loses_nothing(livetap_bench, case, rate, queues, payload):
    bench = livetap_bench
    bench.echo_streams = rate < SINK_FROM_PPS
    tap, source, ready = _tap(bench, queues)
    _queue_for(bench, tap, rate)
    targets = [bench.target(f"target{i}") for i in range(1, HOPS + 1)]
    before = bench.link(tap)
    drops_before = wire_drops(bench.netns)
    # Two flows per queue: the TAP spreads flows over its queues by hash. One queue takes
    # two flows too from 50k pps: each flow's injector is a thread of its own, and one
    # thread alone reached 70-90k of 100k pps beside other work (three warm runs here).
    flows = 2 * queues if queues > 1 or rate >= SINK_FROM_PPS else 1
    traffic = bench.streams(rate, payload, STEADY_S + (HOPS - 1) * HOP_SPACING_S + TAIL_S, flows)
    traffic.start()
    phases = [("before", traffic.started_ns)]
    holder, holders_counters, hops = source, [], []
    for index, (target, path) in enumerate(targets, 1):
        # The hop's moment: so many echoes back (a sink: sent), or (a bench losing frames) at most
        # half a second late.
        at_s = STEADY_S + (index - 1) * HOP_SPACING_S
        traffic.wait_progress(int(rate / flows * at_s), at_s + 0.5 - (time.monotonic_ns() - traffic.started_ns) / 1e9)
        hop = bench.hand_off(holder, target, path)
        case.step(f"hand-off {index}: {holder.name} -> {target.name}, blackout {hop.blackout_us} us "
                  f"({hop.priority()}): " + ", ".join(f"{steps} {us}" for steps, us in hop.breakdown_us()))
        holders_counters.append(hop.source)
        hops.append(hop)
        phases += [(f"handoff-{index}", hop.stopped_reading_ns), (f"after-{index}", hop.serving_ns)]
        assert holder.wait(5) == 0, f"{holder.name} exit status after committing"
        holder = target
    traffic.finish(timeout=10)
    if not traffic.echoed:
        # Until the last holder read every flow's last datagram (what the TAP queued meanwhile,
        # at most JITTER_BUDGET_S of the stream, is read by then).
        wait_read_through(traffic, lambda: reader_counters(holder), JITTER_BUDGET_S + 1.0)
    after, last_counters = _quiet_reading(bench, tap, holder)
    drops_after = wire_drops(bench.netns)
    holders_counters.append(last_counters)
    holder.close_input()
    holder.expect("stopped ")
    assert holder.wait(5) == 0

    if traffic.echoed:
        reports = traffic.analyze(phases)
        gaps = [traffic.longest_gap_ns(h.stopped_reading_ns, h.serving_ns) / 1e3 for h in hops]
    else:
        reports, incomplete = analyze_read(traffic, phases, holders_counters)
        assert not incomplete, f"the readers' record of the stream is incomplete: {'; '.join(incomplete)}"
        gaps = []  # nothing comes back to the peer: no echo gap
    rows = _per_flow_checks(traffic, reports, holders_counters)
    blackouts = [h.blackout_us for h in hops]
    achieved = sum(r["overall"]["rate_achieved_pps"] for r in reports)
    case.save_json("traffic.json", traffic.record(phases, reports))
    case.save_json("handoff.json", {"hops": [{**dataclasses.asdict(h), "blackout_us": h.blackout_us,
                                              "breakdown_us": h.breakdown_us()} for h in hops],
                                    "flows": rows, "link_before": before.to_json(),
                                    "link_after": after.to_json(), "echo_gaps_us": gaps,
                                    "readers": [c.raw for c in holders_counters]})
    case.metric("rate_asked", rate, "pps")
    case.metric("rate_achieved", round(achieved, 1), "pps")
    case.metric("lost", sum(r["lost"] for r in rows))
    case.metric("duplicates", sum(r["duplicates"] for r in rows))
    case.metric("reordered", sum(r["reordered"] for r in rows))
    case.metric("blackout_median", round(statistics.median(blackouts), 1), "us")
    case.metric("blackout_realtime_hops", sum(1 for h in hops if all(h.realtime.values()) and h.realtime))
    case.metric("blackout_max", max(blackouts), "us")
    if gaps:
        case.metric("echo_gap_max", round(max(gaps), 1), "us")
    case.metric("echoed", int(traffic.echoed))
    case.metric("frames_per_queue_last_target", ",".join(str(n) for n in holders_counters[-1].queue_frames))
    case.metric("tx_dropped", after.tx_dropped - before.tx_dropped)

    around = sum(p["lost"] for r in reports for p in r["phases"] if p["name"].startswith("handoff-"))
    steady = sum(r["lost"] for r in rows) - around
    # LT-DATA-01 holds while the blackout stays within the queue's capacity: at worst all
    # flows hash to one queue, which holds txqueuelen frames. A longer blackout (a loaded
    # host descheduling the processes for 100 ms and more) leaves the rule's premise unmet:
    # the run says so instead of judging (the negative control judges that regime).
    capacity_us = after.txqlen / rate * 1e6
    beyond = [(index, hop.blackout_us) for index, hop in enumerate(hops, 1) if hop.blackout_us > capacity_us]
    if beyond and after.tx_dropped != before.tx_dropped:
        pytest.skip(f"not judged: hand-off blackout {', '.join(f'{us / 1e3:.0f} ms (hop {i})' for i, us in beyond)} "
                    f"beyond the queue's capacity ({after.txqlen} frames = {capacity_us / 1e3:.0f} ms at {rate} pps): "
                    f"LT-DATA-01's premise does not hold on this host now; tx_dropped +"
                    f"{after.tx_dropped - before.tx_dropped}")
    # Loss only in steady state, none in a hand-off's phases, every flow recovered after
    # each loss window, and every frame no reader read counted as dropped by a device of
    # the wire (the TAP for want of a reader, a veth or the bridge for want of a CPU): the
    # readers or the wire fell behind the rate for a while away from any hand-off (a loaded
    # host stalls them 100 ms and more), the bench's limit here, not the hand-off LT-DATA-01
    # is about. A reader that stops serving a flow (a queue left unread) never recovers, and
    # a frame lost where no counter saw it is explained by nothing: both are judged.
    recovered = all(window[1] < row["sent"] - 1 for row in rows for window in row["loss_windows"])
    never_read = sum(row["never_read"] for row in rows)
    counted = sum(drops_after.get(name, 0) - dropped for name, dropped in drops_before.items())
    case.metric("wire_drops", counted)
    if steady and not around and recovered and never_read <= counted:
        lag = (f"echo RTT max {max(r['overall']['rtt_max_ms'] for r in reports):.0f} ms" if traffic.echoed
               else "not echoed")
        pytest.skip(f"not judged: {steady} frames lost in steady state, none around the hand-offs ({lag}; "
                    f"the wire's devices dropped {counted}, tx_dropped +{after.tx_dropped - before.tx_dropped}): "
                    f"this host could not carry {rate} pps away from the hand-offs now: {_describe(rows)}")
    # Frames the TAP dropped for want of a reader are lost, whoever held the queues.
    require(after.tx_dropped == before.tx_dropped, "LT-DATA-01", f"the TAP dropped frames no reader took: "
            f"tx_dropped {before.tx_dropped} -> {after.tx_dropped} ({around} of the stream's losses in the "
            f"hand-off phases, {steady} in steady state)")
    # Ownership first (who read what), then what the stream lost: a loss caused by a reader
    # that kept reading after its Commit names the rule it broke. The kernel counted as read
    # exactly what the readers reported reading...
    read = sum(c.frames for c in holders_counters)
    assert (after.ifindex, after.carrier_changes) == (before.ifindex, before.carrier_changes)
    require(after.tx_packets == read, "LT-XFER-02", f"TAP tx_packets {after.tx_packets}, frames the backends "
            f"reported reading {read}: a reader read frames it did not report (after its Commit?)")
    # ...and no holder read a seq of a flow its successor read from: the successor's first
    # comes after the holder's last. A gap between them (frames that never reached the TAP:
    # the kernel saw no other reader) is a loss, judged below.
    for index, hop in enumerate(hops):
        assert hop.state == ready, f"hop {index + 1}: the target serves '{hop.state}', " \
                                   f"the source had '{ready}'"
        earlier, later = holders_counters[index], holders_counters[index + 1]
        for stream in traffic.streams:
            # A holder that read nothing of a flow (on a loaded host the flow may have lost all
            # it sent in that holder's time) gives no seq to compare: the loss check below judges it.
            if stream.stream_id not in earlier.streams or stream.stream_id not in later.streams:
                continue
            last = earlier.streams[stream.stream_id][1]
            first = later.streams[stream.stream_id][0]
            require(first > last, "LT-XFER-02", f"hop {index + 1}, flow {stream.stream_id:016x}: the target's "
                    f"first seq {first}, its predecessor's last {last}: both read the same part of the flow")
    unexplained = max(0, never_read - counted)
    require(all(r["lost"] == 0 and r["duplicates"] == 0 and r["reordered"] == 0 for r in rows), "LT-DATA-01",
            f"{around} lost in the hand-off phases, {steady} in steady state before/after them"
            f"{f' ({unexplained} never read and dropped where no device counted them)' if unexplained else ''}"
            f": {_describe(rows)}")
    # Judged at the rate asked, or not at all: an injector that fell short (a loaded host)
    # proved nothing at this rate.
    if achieved < 0.9 * rate:
        pytest.skip(f"not judged at {rate} pps: the injector reached {achieved:.0f} pps (below 90 %); "
                    f"nothing was lost at that rate")


def _one_hand_off_run(bench, case, tap, source, rate=10_000, seconds=0.6, at_s=0.2, target_options=None,
                      flows=1):
    """A stream at `rate`, one hand-off `at_s` into it; returns what the
    properties and unprivileged cases judge."""
    target, path = bench.target("target1", **(target_options or {}))
    before = bench.link(tap)
    features = bench.features(tap)
    case.save_json("features-before.json", features)
    traffic = bench.streams(rate, SMALL, seconds, flows)
    traffic.start()
    traffic.wait_echoed(int(rate / flows * at_s), 3)
    return target, before, features, traffic, bench.hand_off(source, target, path)


def _offloads_kept(bench, case, tap, before, rule, whose):
    """The device's offloads, read from the host before and after the hand-off
    (never the backends' word), are the same."""
    after = bench.features(tap)
    case.save_json("features-after.json", after)
    changed = {name: f"{'on' if was else 'off'} -> {'on' if after.get(name) else 'off'}"
               for name, was in before.items() if after.get(name) != was}
    require(not changed, rule, f"{tap}'s offloads changed across the hand-off ({whose}; ethtool -k from "
                               f"the host): {changed}")


def _finish_one(bench, tap, traffic, target, phases):
    traffic.finish(timeout=10)
    link, counters = _quiet_reading(bench, tap, target)
    reports = traffic.analyze(phases)
    return link, counters, reports


@pytest.mark.rule("LT-DATA-02", "LT-STATE-01")
@pytest.mark.parametrize("queues", [pytest.param(1, id="persistent-1queue"),
                                    pytest.param(2, id="own-2queue")])
def test_properties_preserved(livetap_bench, case, queues):
    """Non-default properties (vnet header 10, checksum and TSO offloads, a
    1 MiB sndbuf) arrive as they were; the device outside the processes keeps
    ifindex, kind, flags, carrier and counters."""
    bench = livetap_bench
    tap, source, ready = _tap(bench, queues, vnet_hdr_size=10, sndbuf=1 << 20)
    target, before, features, traffic, hop = _one_hand_off_run(bench, case, tap, source, flows=queues)
    assert source.wait(5) == 0
    phases = hop.phases(traffic.started_ns)
    after, target_counters, reports = _finish_one(bench, tap, traffic, target, phases)
    case.save_json("properties.json", {"ready": ready, "serving": hop.state, "link_before": before.to_json(),
                                       "link_after": after.to_json()})
    case.metric("blackout", hop.blackout_us, "us")
    case.metric("carrier_changes", after.carrier_changes - before.carrier_changes)
    source_fields, target_fields = fields(ready), fields(hop.state)
    differing = {k: (v, target_fields.get(k)) for k, v in source_fields.items() if target_fields.get(k) != v}
    assert not differing, f"the target serves other properties than the source had: {differing}"
    _offloads_kept(bench, case, tap, features, "LT-DATA-02", "the device must survive the hand-off unchanged")
    assert source_fields["vnet_hdr_size"] == "10" and source_fields["offloads"] == "0x7" \
        and source_fields["sndbuf"] == str(1 << 20), f"the source did not set what it was asked: {ready}"
    assert (after.ifindex, after.info, after.txqlen) == (before.ifindex, before.info, before.txqlen)
    assert after.carrier_changes == before.carrier_changes, \
        f"carrier changed {after.carrier_changes - before.carrier_changes} times across the hand-off"
    assert after.tx_dropped == before.tx_dropped
    read = hop.source.frames + target_counters.frames
    assert after.tx_packets == read, f"TAP tx_packets {after.tx_packets}, frames read by source and target {read}"
    rows = _per_flow_checks(traffic, reports, [hop.source, target_counters])
    assert all(r["lost"] == 0 and r["duplicates"] == 0 for r in rows), _describe(rows)


@pytest.mark.rule("LT-DATA-01", "LT-XFER-02")
def test_source_exits_before_target_serves(livetap_bench, case):
    """The source exits right after the Commit; the target waits 50 ms (500
    frames at 10k pps, half the queue) before it reads: nothing is lost."""
    bench = livetap_bench
    tap, source, _ = _tap(bench, 1)
    target, path = bench.target("target1", serve_delay_ms=50)
    before = bench.link(tap)
    traffic = bench.streams(10_000, SMALL, 0.6)
    traffic.start()
    traffic.wait_echoed(2000, 3)
    committed = bench.commit(source, path)
    assert source.wait(5) == 0
    exit_seen_ns = time.monotonic_ns()
    hop = bench.serving(target, committed)
    assert exit_seen_ns < hop.serving_ns, "the source had not exited when the target started reading"
    case.step(f"source exited {round((hop.serving_ns - exit_seen_ns) / 1e6, 1)} ms before the target read")
    phases = hop.phases(traffic.started_ns)
    after, target_counters, reports = _finish_one(bench, tap, traffic, target, phases)
    rows = _per_flow_checks(traffic, reports, [hop.source, target_counters])
    case.save_json("traffic.json", traffic.record(phases, reports))
    case.metric("blackout", hop.blackout_us, "us")
    case.metric("lost", sum(r["lost"] for r in rows))
    assert all(r["lost"] == 0 and r["duplicates"] == 0 and r["reordered"] == 0 for r in rows), _describe(rows)
    stream = traffic.streams[0].stream_id
    assert target_counters.streams[stream][0] == hop.source.streams[stream][1] + 1
    assert after.tx_dropped == before.tx_dropped and after.carrier_changes == before.carrier_changes


@pytest.mark.rule("LT-XFER-04", "LT-DATA-01")
def test_target_killed_mid_handoff_source_resumes(livetap_bench, case):
    """The target holds the validated offer (before its Accept, so before the
    Commit) and is killed: the source keeps its queues, resumes, and hands
    off to a second target later; nothing is lost."""
    bench = livetap_bench
    tap, source, ready = _tap(bench, 1)
    doomed, doomed_path = bench.target("target-killed", hold_offer_ms=5000)
    target, path = bench.target("target2")
    before = bench.link(tap)
    traffic = bench.streams(10_000, SMALL, 0.8)
    traffic.start()
    traffic.wait_echoed(2000, 3)
    offered_ns = source.send(f"handoff {doomed_path}")
    doomed.expect("offered ")
    doomed.kill()
    killed_ns = time.monotonic_ns()
    resumed = source.expect("resumed ")
    resumed_ns = time.monotonic_ns()
    case.step(f"target killed holding the offer; source: {resumed}")
    assert "peer closed" in resumed, resumed
    traffic.wait_echoed(4000, 3)
    hop = bench.hand_off(source, target, path)
    phases = [("before", traffic.started_ns), ("killed-handoff", offered_ns), ("resumed", resumed_ns),
              ("handoff", hop.stopped_reading_ns), ("after", hop.serving_ns)]
    after, target_counters, reports = _finish_one(bench, tap, traffic, target, phases)
    rows = _per_flow_checks(traffic, reports, [hop.source, target_counters])
    case.save_json("traffic.json", traffic.record(phases, reports))
    case.metric("resume_gap", round(traffic.longest_gap_ns(offered_ns, resumed_ns) / 1e6, 2), "ms")
    case.metric("kill_to_resumed", round((resumed_ns - killed_ns) / 1e6, 2), "ms")
    case.metric("lost", sum(r["lost"] for r in rows))
    assert all(r["lost"] == 0 and r["duplicates"] == 0 and r["reordered"] == 0 for r in rows), _describe(rows)
    stream = traffic.streams[0].stream_id
    assert target_counters.streams[stream][0] == hop.source.streams[stream][1] + 1
    assert hop.state == ready
    assert after.tx_dropped == before.tx_dropped and after.carrier_changes == before.carrier_changes


# name: (TAP, source options, command, reply); 10k pps, the command 0.2 s into the stream
NEGATIVE_CONTROLS = {
    # A close loses what the queue held (50 ms of backlog) and what comes while no queue
    # is attached (carrier off: the bridge drops it); the purge is not counted anywhere.
    "close-reopen-persistent": ("persistent", {}, "reopen 50", "reopened "),
    # The device goes with its last fd: a new ifindex, off the bridge until put back.
    "close-reopen-non-persistent": ("own", {"own": True}, "reopen 50", "reopened "),
    # TUNSETQUEUE detach purges the queue (50 ms of backlog) without counting it.
    "detach-attach-queue": ("own", {"own": True, "multi_queue": True}, "detach 50", "reattached "),
    # 200 ms without reading at 10k pps: the queue keeps txqueuelen (1000 = 100 ms) frames,
    # tx_dropped counts every one beyond.
    "blackout-beyond-txqueuelen": ("persistent", {}, "pause 200", "unpaused"),
    # The control's control: 50 ms fits in the queue, nothing is lost.
    "blackout-within-txqueuelen": ("persistent", {}, "pause 50", "unpaused"),
}


@pytest.mark.rule("LT-DATA-01")
@pytest.mark.parametrize("control", list(NEGATIVE_CONTROLS))
def test_negative_control_loss_is_caught(livetap_bench, case, control):
    """Each control breaks the hand-off's promise on purpose; the harness must
    report the loss with its exact count: the datagrams the peer never got
    back are exactly those no reader ever read."""
    bench = livetap_bench
    kind, options, command, reply = NEGATIVE_CONTROLS[control]
    rate = 10_000
    tap, source, ready = _tap(bench, 1, **dict(options))
    before = bench.link(tap)
    wire_before, read_before = bench.wire_sent(), reader_counters(source)
    traffic = bench.streams(rate, SMALL, 0.7)
    traffic.start()
    traffic.wait_echoed(int(rate * 0.2), 3)
    answer = source.ask(command, reply)
    stopped_ns, resumed_ns = int(answer["stopped_reading_ns"]), int(answer["resumed_reading_ns"])
    phases = [("before", traffic.started_ns), (control, stopped_ns), ("after", resumed_ns)]
    if control == "close-reopen-non-persistent":
        assert answer["ifindex"] != fields(ready)["ifindex"], "a new device must have a new ifindex"
        phases.append(("back-on-wire", bench.join_wire(tap)))
    case.step(f"{command}: {answer['line']}")
    traffic.finish(timeout=10)
    after, counters = _quiet_reading(bench, tap, source)
    wire_after = bench.wire_sent()
    reports = traffic.analyze(phases)
    rows = _per_flow_checks(traffic, reports, [counters])
    row = rows[0]
    same_device = after.ifindex == before.ifindex
    counted = after.tx_dropped - before.tx_dropped if same_device else 0
    # tx_dropped counts every frame the full queue refused, the stream's and any other
    # the wire offered the TAP meanwhile (the peer's ARP): those are the frames the
    # wire's stacks sent beyond the stream's datagrams, less those the backend read.
    other_offered = (wire_after - wire_before) - row["sent"]
    other_read = (counters.frames - read_before.frames) - (_stream_frames(counters) - _stream_frames(read_before))
    other_unread = other_offered - other_read
    sent_ns = traffic.streams[0].sent_times()
    sent_while_not_reading = sum(1 for t in sent_ns if stopped_ns <= t < resumed_ns)
    case.save_json("traffic.json", traffic.record(phases, reports))
    case.save_json("control.json", {"command": command, "answer": answer["line"], "flow": row, "link_before": before.to_json(),
                                    "link_after": after.to_json(), "sent_while_not_reading": sent_while_not_reading})
    case.metric("lost", row["lost"])
    case.metric("never_read_by_backend", row["never_read"])
    case.metric("counted_tx_dropped", counted)
    case.metric("other_frames_offered", other_offered)
    case.metric("other_frames_read", other_read)
    case.metric("invisible_to_counters", row["lost"] - counted)
    case.metric("sent_while_not_reading", sent_while_not_reading)
    case.metric("loss_windows", len(row["loss_windows"]))
    case.metric("not_reading", round((resumed_ns - stopped_ns) / 1e6, 2), "ms")
    case.step(f"{control}: {row['lost']} of {row['sent']} lost (tx_dropped +{counted}, invisible "
              f"{row['lost'] - counted}), windows {row['loss_windows']}")

    assert row["duplicates"] == 0 and row["reordered"] == 0, _describe(rows)
    assert row["lost"] == row["never_read"], \
        f"the peer missed {row['lost']} datagrams, the backend never read {row['never_read']}: the count is not exact"
    if control.startswith("blackout-"):
        # A pause purges nothing: every stream datagram the backend did not read was
        # refused by the full queue and counted; beyond those, tx_dropped may count only
        # frames the wire offered besides the stream and the backend did not read (the
        # peer's ARP; one may still be on its way when the counters are read).
        assert row["lost"] <= counted <= row["lost"] + max(0, other_unread), \
            f"LT-DATA-01: a full queue drops and counts: lost {row['lost']} of the stream, tx_dropped +{counted} " \
            f"(frames lost uncounted, or counted beyond the stream's and the unread others); the wire " \
            f"offered {other_offered} other frames (the peer's ARP), the backend read {other_read} of them"
    if control == "blackout-within-txqueuelen":
        assert row["lost"] == 0, f"a blackout within the queue's capacity lost: {_describe(rows)}; " + \
            _stalls(traffic, row, stopped_ns, resumed_ns)
        return
    assert row["lost"] > 0, f"{control}: the harness saw no loss ({_describe(rows)})"
    if control == "blackout-beyond-txqueuelen":
        expected = sent_while_not_reading - after.txqlen
        case.metric("expected_lost", expected)
        # About: the reader's lag (what was already queued when it stopped, and the time it
        # takes to drain the full queue after it resumed) moves the count by the frames sent
        # in that lag, which the echo RTT bounds: 10 ms of traffic on a quiet host, more on a
        # loaded one (the repeated runs saw 1105 lost for 991 expected, 46 of them after).
        lag_ms = max(10.0, max(r["overall"]["rtt_max_ms"] for r in reports))
        slack = int(rate * lag_ms / 1e3)
        case.metric("expected_lost_slack", slack)
        assert abs(row["lost"] - expected) <= slack, \
            f"lost {row['lost']}, expected about {sent_while_not_reading} sent - txqueuelen {after.txqlen} " \
            f"(within {slack}: {lag_ms:.0f} ms of the reader's lag, the echo RTT max)"
    else:
        assert row["lost"] > counted, \
            f"{control}: lost {row['lost']}, all of them counted in tx_dropped (+{counted}); the purge should not be"


def _stalls(traffic, row, stopped_ns: int, resumed_ns: int) -> str:
    """Where the stream's losses lie against the pause, and the longest the
    injector could not send: a loaded 2-core machine that stalls the bench
    (injector and backend alike) overflows the queue later, with the pause's
    backlog still in it; such a run measures the machine."""
    sent = traffic.streams[0].sent_times()
    gap_ms = max(((later - earlier) / 1e6 for earlier, later in zip(sent, sent[1:])), default=0.0)
    windows = [(round((sent[first] - resumed_ns) / 1e6, 1), count) for first, _, count in row["loss_windows"]]
    return (f"loss windows (ms after the backend resumed reading, count): {windows[:6]}; the pause lasted "
            f"{(resumed_ns - stopped_ns) / 1e6:.1f} ms; the injector's longest send gap {gap_ms:.1f} ms "
            f"(tens of ms: the machine stalled the bench)")


def _stream_frames(counters) -> int:
    """The stream datagrams a backend read, every flow."""
    return sum(frames for _, _, frames in counters.streams.values())


NOBODY = 65534


def _identity(backend) -> dict:
    listening = next(t["line"] for t in backend.transcript if t["dir"] == "out" and t["line"].startswith("listening "))
    return fields(listening)


@pytest.mark.rule("LT-XFER-03", "LT-DATA-01")
def test_unprivileged_target_serves(livetap_bench, case):
    """The target runs as nobody with no capability at all, in the TAP's
    namespace (where a VMM serving the TAP runs): it cannot open
    /dev/net/tun nor configure a TAP, and needs neither. It receives the
    queues, validates them and serves; nothing is lost."""
    bench = livetap_bench
    tap, source, ready = _tap(bench, 1)
    target, before, features, traffic, hop = _one_hand_off_run(
        bench, case, tap, source, target_options={"user": NOBODY})
    identity = _identity(target)
    case.step(f"target runs as uid {identity['uid']}, CapEff {identity['cap_eff']}")
    assert identity["uid"] == str(NOBODY) and int(identity["cap_eff"], 16) == 0, \
        f"the target is not unprivileged: {identity}"
    assert source.wait(5) == 0
    phases = hop.phases(traffic.started_ns)
    after, target_counters, reports = _finish_one(bench, tap, traffic, target, phases)
    rows = _per_flow_checks(traffic, reports, [hop.source, target_counters])
    case.save_json("traffic.json", traffic.record(phases, reports))
    case.metric("blackout", hop.blackout_us, "us")
    case.metric("lost", sum(r["lost"] for r in rows))
    assert hop.state == ready
    _offloads_kept(bench, case, tap, features, "LT-XFER-03", "the target, the only one serving the device after the "
                   "Commit, must never reconfigure it")
    assert all(r["lost"] == 0 and r["duplicates"] == 0 and r["reordered"] == 0 for r in rows), _describe(rows)
    stream = traffic.streams[0].stream_id
    assert target_counters.streams[stream][0] == hop.source.streams[stream][1] + 1
    assert target_counters.echoed > 0, "the unprivileged target read but did not answer"
    assert after.tx_packets == hop.source.frames + target_counters.frames
    assert after.tx_dropped == before.tx_dropped and after.carrier_changes == before.carrier_changes


@pytest.mark.rule("LT-STATE-03", "LT-XFER-04")
def test_unprivileged_target_elsewhere_rejects(livetap_bench, case):
    """An unprivileged target in another namespace than the TAP cannot learn
    the device's namespace (TUNGETDEVNETNS needs CAP_NET_ADMIN), so it cannot
    check the ifindex the state claims: it must reject the hand-off, not
    serve unverified queues; the source keeps them and loses nothing."""
    bench = livetap_bench
    tap, source, _ = _tap(bench, 1)
    target, path = bench.target("target-elsewhere", user=NOBODY, in_wire_namespace=False)
    assert int(_identity(target)["cap_eff"], 16) == 0
    before = bench.link(tap)
    traffic = bench.streams(10_000, SMALL, 0.5)
    traffic.start()
    traffic.wait_echoed(2000, 3)
    source.send(f"handoff {path}")
    resumed = source.expect("resumed ")
    failed = target.expect("failed ")
    case.step(f"source: {resumed}; target: {failed}")
    assert "rejected" in resumed and "do not match the transferred TAP state" in resumed, resumed
    assert target.wait(5) == 1
    traffic.finish(timeout=10)
    after, counters = _quiet_reading(bench, tap, source)
    reports = traffic.analyze([("all", traffic.started_ns)])
    rows = _per_flow_checks(traffic, reports, [counters])
    case.metric("lost", sum(r["lost"] for r in rows))
    assert all(r["lost"] == 0 and r["duplicates"] == 0 for r in rows), _describe(rows)
    assert after.tx_packets == counters.frames and after.tx_dropped == before.tx_dropped
