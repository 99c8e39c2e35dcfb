"""Live-TAP configuration rules (LT-CFG-01..04) against the REFERENCE
backend: what happens when backend transfer is switched off, when the
migration channel is not local, and when a target is given TAP options that
conflict with incoming fds. The backend's behaviour is judged against the
reference decisions (reference_impl/livetap/transfer_config, bound as
vnetct_native.livetap_transfer_decision, and livetap_check_target /
livetap_check_tap_netdev, which raise LiveTapError): the answer and its
wording must be the same, and a migration that moves no fd
must cost the running source nothing (sequence numbers of a 10k pps stream,
the TAP's counters as second witness).

The same rules against a QEMU that has the live-TAP series:
cases/livetap/qemu_adapter.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from vnetct.livetap.bench import describe_flows, per_flow_checks, quiet_reading
from vnetct.core.native import vnetct_native

# These cases judge vnetct's own reference backend, not the SUT; it needs real TAPs,
# processes and traffic.
pytestmark = [pytest.mark.subject("reference"), pytest.mark.needs("datapath")]

RATE = 10_000
SMALL = 64


def _reference_refusal(check, *args, **options) -> vnetct_native.LiveTapError:
    """The reference's LiveTapError for a configuration it refuses."""
    with pytest.raises(vnetct_native.LiveTapError) as refusal:
        check(*args, **options)
    return refusal.value


def _source_on_wire(bench, **switches):
    bench.make_wire()
    tap = bench.wire.taps[0]
    source, _ = bench.source(tap, **switches)
    return tap, source


def _judge_source_kept_everything(bench, case, tap, source, traffic, before):
    """The stream ran through the attempt: the source alone read every frame."""
    traffic.finish(timeout=10)
    after, counters = quiet_reading(bench, tap, source)
    reports = traffic.analyze([("all", traffic.started_ns)])
    rows = per_flow_checks(traffic, reports, [counters])
    case.save_json("traffic.json", traffic.record([("all", traffic.started_ns)], reports))
    case.metric("lost", sum(r["lost"] for r in rows))
    case.metric("rate_achieved", round(sum(r["overall"]["rate_achieved_pps"] for r in reports), 1), "pps")
    assert all(r["lost"] == 0 and r["duplicates"] == 0 and r["reordered"] == 0 for r in rows), describe_flows(rows)
    assert after.tx_packets == counters.frames, \
        f"TAP tx_packets {after.tx_packets}, frames the source read {counters.frames}"
    assert after.tx_dropped == before.tx_dropped and after.carrier_changes == before.carrier_changes
    return counters


@pytest.mark.rule("LT-CFG-01", "LT-CFG-03")
@pytest.mark.parametrize("parameter,device", [pytest.param(False, True, id="migration-parameter-off"),
                                              pytest.param(True, False, id="device-option-off"),
                                              pytest.param(False, False, id="both-off")])
def test_switch_off_moves_no_fd_and_waiting_target_fails(livetap_bench, case, parameter, device):
    """Backend transfer off (either switch): the source hands nothing over,
    says why, and serves on; the target waiting for fds fails with that
    reason instead of waiting forever or serving nothing."""
    bench = livetap_bench
    tap, source = _source_on_wire(bench, transfer_parameter=parameter, transfer_device=device)
    target, path = bench.target("target-waiting")
    decision = vnetct_native.livetap_transfer_decision(parameter, device, True)
    refusal = _reference_refusal(vnetct_native.livetap_check_target, parameter, device, True)
    case.save_json("reference-decision.json", {**decision, "target_error": refusal.code, "message": str(refusal)})
    assert not decision["transfers_fds"] and refusal.code == "NoIncomingFds", decision
    before = bench.link(tap)
    traffic = bench.streams(RATE, SMALL, 0.5)
    traffic.start()
    traffic.wait_echoed(RATE // 5, 3)
    answer = source.ask(f"handoff unix:{path}", "untransferred ")["line"]
    failed = target.expect("failed ")
    case.step(f"source: {answer}; target: {failed}")
    why = answer.removeprefix("untransferred ")
    assert failed == f"failed {str(refusal).split(': ', 1)[0]}: the source migrates without its " \
                     f"backend: {why}", f"the target's error differs from the reference decision: {failed}"
    assert str(refusal).endswith(why), f"the source's reason '{why}' is not the reference's '{refusal}'"
    assert target.wait(5) == 1, "a target that got no fds must fail (exit 1)"
    _judge_source_kept_everything(bench, case, tap, source, traffic, before)


@pytest.mark.rule("LT-CFG-04")
def test_non_local_channel_moves_no_fd(livetap_bench, case):
    """Both switches on, but the channel is TCP: no fd travels (the source
    does not even connect) and it serves on. The same source then hands off
    over a unix channel to the target that was waiting all along: the
    refusal was about the channel, not the switches."""
    bench = livetap_bench
    tap, source = _source_on_wire(bench)
    target, path = bench.target("target1")
    assert not vnetct_native.livetap_transfer_decision(True, True, False)["transfers_fds"]
    refusal = _reference_refusal(vnetct_native.livetap_check_target, True, True, False)
    before = bench.link(tap)
    traffic = bench.streams(RATE, SMALL, 0.6)
    traffic.start()
    traffic.wait_echoed(RATE // 5, 3)
    answer = source.ask("handoff tcp:127.0.0.1:4444", "untransferred ")["line"]
    assert str(refusal).endswith(answer.removeprefix("untransferred ")), \
        f"'{answer}' does not give the reference's reason '{refusal}'"
    assert target.describe_exit() == "running"
    traffic.wait_echoed(RATE * 2 // 5, 3)
    committed = bench.hand_off(source, target, f"unix:{path}").source
    assert source.wait(5) == 0
    traffic.finish(timeout=10)
    after, served = quiet_reading(bench, tap, target)
    reports = traffic.analyze([("all", traffic.started_ns)])
    rows = per_flow_checks(traffic, reports, [committed, served])
    case.metric("lost", sum(r["lost"] for r in rows))
    assert all(r["lost"] == 0 and r["duplicates"] == 0 and r["reordered"] == 0 for r in rows), describe_flows(rows)
    assert after.tx_packets == committed.frames + served.frames
    assert after.tx_dropped == before.tx_dropped


CONFLICTS = {"ifname": ("--ifname", "tap9"), "vnet_hdr": ("--vnet-hdr", "1"), "fd": ("--fd", "3")}


@pytest.mark.rule("LT-CFG-02")
@pytest.mark.parametrize("given", [pytest.param(("ifname",), id="ifname"), pytest.param(("vnet_hdr",), id="vnet-hdr"),
                                   pytest.param(("fd",), id="fd"),
                                   pytest.param(("ifname", "vnet_hdr", "fd"), id="all-three")])
def test_incoming_fds_refuses_conflicting_tap_options(livetap_bench, case, given):
    """A target that waits for incoming fds and is also told how to open or
    set up the TAP refuses to start, naming every conflicting option, and
    never listens."""
    bench = livetap_bench
    extra = tuple(word for name in given for word in CONFLICTS[name])
    target, path = bench.target("target-misconfigured", extra=extra, listening=False)
    refusal = target.expect("failed ")
    expected = _reference_refusal(vnetct_native.livetap_check_tap_netdev, True, **{name: True for name in given})
    case.step(f"target: {refusal}")
    assert expected.code == "ConflictingOptions"
    assert refusal == f"failed {expected}", f"the backend said '{refusal}', the reference '{expected}'"
    assert target.wait(5) == 1
    assert not Path(path).exists(), "a refused target created its socket"
    # Without the conflicting options the same target starts and listens.
    assert vnetct_native.livetap_check_tap_netdev(True) is None
    bench.target("target-plain")
