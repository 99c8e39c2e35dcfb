"""vnetct.traffic.impair: the nft ruleset text, the VNETCT_IMPAIR plan, the
loss bounds (no root needed), and the rules installed, counted and removed in
a real wire made by the harness's Topology, with frames written into a TAP
as its guest would (needs root and nft)."""

import os
import shutil
import struct
import time

import pytest

from vnetct.traffic import continuity, impair, wire_faults
from vnetct.traffic.impair import Direction, Impairment, ImpairmentError


def test_random_loss_both_directions_is_a_counter_and_a_drop_per_chain():
    text = impair.ruleset(impair.random_loss_rules("vabct1", 1))
    assert text.splitlines() == [
        "add table bridge vnetct_impair",
        "add chain bridge vnetct_impair from_guest { type filter hook prerouting priority 0; policy accept; }",
        "add chain bridge vnetct_impair to_guest { type filter hook postrouting priority 0; policy accept; }",
        'add rule bridge vnetct_impair from_guest iifname "vabct1" counter comment "seen random-loss vabct1 from_guest"',
        'add rule bridge vnetct_impair from_guest iifname "vabct1" numgen random mod 10000 < 100 counter drop '
        'comment "random-loss vabct1 from_guest"',
        'add rule bridge vnetct_impair to_guest oifname "vabct1" counter comment "seen random-loss vabct1 to_guest"',
        'add rule bridge vnetct_impair to_guest oifname "vabct1" numgen random mod 10000 < 100 counter drop '
        'comment "random-loss vabct1 to_guest"']


def test_blackout_counts_the_guests_frames_from_installation():
    rule, = impair.blackout_rules("vabct3", 60)
    assert rule.chain == "from_guest"
    assert rule.match == "numgen inc mod 4294967295 < 60"
    assert "the first 60 frames from guest on vabct3" in rule.description


def test_bad_amounts_are_refused():
    for percent in (0, 100.5, 0.001):
        with pytest.raises(ValueError, match="random loss on t0"):
            impair.random_loss_rules("t0", percent)
    with pytest.raises(ValueError, match="blackout on t0"):
        impair.blackout_rules("t0", 0)


def test_counters_come_from_the_json_listing():
    def rule(comment, packets):
        return {"rule": {"table": "vnetct_impair", "comment": comment,
                         "expr": [{"match": {}}, {"counter": {"packets": packets, "bytes": 0}}]}}
    listing = {"nftables": [{"metainfo": {}}, rule("seen blackout t3 from_guest", 75),
                            rule("blackout t3 from_guest", 60), rule("seen other", 1)]}
    assert impair.counters_from_listing(listing) == {"blackout t3 from_guest": {"seen": 75, "dropped": 60},
                                                     "other": {"seen": 1}}


def test_the_plan_names_point_nic_and_kind():
    plan = wire_faults.parse("steady:hostdev0:loss=1; target-ports:hostdev0:blackout=60;stream-start:net1:loss=2/to-guest")
    assert [p.describe() for p in plan] == ["steady:hostdev0:loss=1/both", "target-ports:hostdev0:blackout=60/from-guest",
                                            "stream-start:net1:loss=2/to-guest"]
    for bad in ("steady:hostdev0", "later:hostdev0:loss=1", "steady:hostdev0:delay=5", "steady:x:blackout=5/both"):
        with pytest.raises(ValueError, match="impairment plan"):
            wire_faults.parse(bad)


def _window(start_ms, end_ms):
    return {"first_seq": 1, "last_seq": 2, "count": 2, "start_ns": int(start_ms * 1e6), "end_ns": int(end_ms * 1e6),
            "duration_ms": end_ms - start_ms}


def test_a_loss_window_is_judged_on_its_start_end_and_length():
    bound = continuity.LossBound("re-plug", "hot-add", int(1000e6), "link-up + 20 ms", int(1500e6), 520.0, "why")
    assert continuity.violations([_window(1100, 1490)], bound) == []
    early, = continuity.violations([_window(900, 1100)], bound)
    assert early.startswith("re-plug: loss seq 1-2 (2 datagrams, 200 ms) began 100 ms before hot-add")
    late = continuity.violations([_window(1100, 1800)], bound)
    assert late[0].endswith("lasted 300 ms past link-up + 20 ms")
    assert late[1].startswith("re-plug: loss seq 1-2 (2 datagrams, 700 ms) is longer than 520 ms")
    assert late[1].endswith("[bounds: why]")


def _needs_root_and_nft():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    if shutil.which("nft") is None:
        pytest.skip("needs nft (package nftables)")


@pytest.fixture
def wire():
    _needs_root_and_nft()
    from vnetct.core.native import vnetct_native

    topology = vnetct_native.Topology.create(netns=f"vnetct-imptest-{os.getpid()}", device_prefix="vimpt",
                                             taps=2, peer_address="198.18.0.1/24")
    yield topology
    topology.destroy()


def _send_from_guest(fd, count):
    """Frames a guest would send: a virtio-net header (10 bytes, IFF_VNET_HDR)
    and a broadcast Ethernet frame of the local experimental type 0x88b5."""
    frame = b"\xff" * 6 + bytes.fromhex("525400aabbcc") + struct.pack("!H", 0x88B5) + b"\0" * 46
    for _ in range(count):
        os.write(fd, b"\0" * 10 + frame)


def _wait_forwarding(wire, taps) -> None:
    """Until the bridge forwards from `taps`: an opened TAP's carrier reaches its bridge port
    through the kernel's link watch, up to a second later, and a bridge port not yet
    forwarding drops the frames before any nftables rule sees them (seen: the blackout rule
    counting 0 of 20)."""
    import json

    from vnetct.core.native import vnetct_native

    deadline = time.monotonic() + 5.0
    while True:
        status, output = vnetct_native.run_command(["bridge", "-n", wire.netns, "-j", "link", "show"], 10.0)
        states = {port.get("ifname"): port.get("state") for port in json.loads(output or "[]")}
        if all(states.get(tap) == "forwarding" for tap in taps):
            return
        assert time.monotonic() < deadline, f"bridge ports not forwarding after 5 s: {states}"
        time.sleep(0.02)


def test_rules_drop_count_and_go_in_a_real_wire(wire):
    from vnetct.core.native import vnetct_native

    tap0, tap1 = wire.taps
    impairment = Impairment(wire)
    impairment.blackout(tap0, 7)
    impairment.random_loss(tap1, 50, Direction.FROM_GUEST)
    fds = [vnetct_native.open_tap_in_netns(wire.netns, tap) for tap in (tap0, tap1)]
    try:
        _wait_forwarding(wire, (tap0, tap1))
        _send_from_guest(fds[0], 20)
        _send_from_guest(fds[1], 200)
        # A TAP's frames reach the bridge from the kernel's backlog, after write() returned:
        # read the counters until all 220 were seen (bounded).
        deadline = time.monotonic() + 5.0
        while True:
            counts = impairment.counters()
            if sum(c["seen"] for c in counts.values()) >= 220 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        for fd in fds:
            os.close(fd)
    assert counts[f"blackout {tap0} from_guest"] == {"seen": 20, "dropped": 7}
    lossy = counts[f"random-loss {tap1} from_guest"]
    assert lossy["seen"] == 200 and 50 < lossy["dropped"] < 150  # binomial(200, 0.5): outside is ~1e-12
    assert [r["dropped"] for r in impairment.evidence()["rules"]] == [7, lossy["dropped"]]
    impairment.remove()
    impairment.remove()  # idempotent
    listed = vnetct_native.run_command(["ip", "netns", "exec", wire.netns, "nft", "list", "tables"], 10.0)[1]
    assert "vnetct_impair" not in listed


def test_nft_errors_name_namespace_tap_and_stderr(wire):
    impairment = Impairment(wire)
    impairment.blackout(wire.taps[0], 1)
    with pytest.raises(ImpairmentError, match=f"namespace {wire.netns}: blackout {wire.taps[0]} from_guest is "
                                              "installed already"):
        impairment.blackout(wire.taps[0], 5)
    broken = Impairment(wire)
    with pytest.raises(ImpairmentError) as error:
        broken._nft(["-f", "-"], 'add rule bridge vnetct_impair from_guest iifname "x" bogus', ["x"])
    assert f"namespace {wire.netns}, TAP x:" in str(error.value) and "Error: syntax error" in str(error.value)
    impairment.remove()


def test_a_loss_may_begin_as_early_as_the_paths_latency_then():
    bound = continuity.LossBound("migration", "STOP", int(1000e6), "RESUME", int(2000e6), 900.0, "why")
    assert continuity.violations([_window(850, 1100)], bound, lambda seq: 209.0) == []
    early, = continuity.violations([_window(850, 1100)], bound, lambda seq: 3.0)
    assert "began 150 ms before STOP (the path's latency then: 20 ms)" in early
