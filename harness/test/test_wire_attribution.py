"""The wire judges on crafted frames: FO-MIG-TGT-03's announce judge
(vnetct.failover.announce) and the per-port attribution of the echo stream
(vnetct.traffic.wire). Each seeded fault (a missing round, a late first
announce, a round too many, wrong spacing, the wrong MAC, no announce at all,
echoes on the wrong port) must be reported, naming the rule; the frames QEMU
10.0 sends with its defaults must pass. Malformed frames must decode without
raising. The capture itself is exercised on a TAP of a namespace of its own
(root only)."""

import os
import random
import socket
import struct

import pytest

from vnetct.failover.announce import (QEMU_DEFAULTS, AnnounceParameters, Tolerance, count_announces, judge_announce)
from vnetct.traffic.wire import (FROM_GUEST, STREAM_MAGIC, TO_GUEST, Frame, decode, echo_port_problems, echoes_by_port,
                                 stream_echoes)

MAC = "52:54:00:6f:55:cc"
OTHER_MAC = "52:54:00:12:34:56"
STANDBY, PRIMARY = "vt2", "vt3"
MS = 1_000_000
RESUME_NS = 10_000 * MS
TOLERANCE = Tolerance(late_ms=500.0, early_ms=2.0, first_gap_early_ms=20.0)


def _mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def rarp(mac: str = MAC, sender: str = None) -> bytes:
    """QEMU's self-announce frame (net/announce.c's layout, 60 bytes)."""
    body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 3) + _mac_bytes(sender or mac) + bytes(4) + \
        _mac_bytes(sender or mac) + bytes(4)
    return (b"\xff" * 6 + _mac_bytes(mac) + b"\x80\x35" + body).ljust(60, b"\0")


def garp(mac: str = MAC, address: str = "198.18.0.2") -> bytes:
    ip = socket.inet_aton(address)
    body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + _mac_bytes(mac) + ip + bytes(6) + ip
    return b"\xff" * 6 + _mac_bytes(mac) + b"\x08\x06" + body


def echo(seq: int, address: str = "198.18.0.2", sport: int = 7777) -> bytes:
    payload = struct.pack("!IQIq", STREAM_MAGIC, 42, seq, 0).ljust(64, b"\0")
    udp = struct.pack("!HHHH", sport, 40000, 8 + len(payload), 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp) + len(payload), 0, 0, 64, 17, 0,
                     socket.inet_aton(address), socket.inet_aton("198.18.0.1"))
    return (_mac_bytes("aa:bb:cc:dd:ee:ff") + _mac_bytes(MAC) + b"\x08\x00" + ip + udp + payload)[:96]


def series(offsets_ms, port=STANDBY, head=None):
    return [Frame(RESUME_NS + int(t * MS), port, FROM_GUEST, 60, head or rarp()) for t in offsets_ms]


# QEMU 10.0 with its defaults, as measured: round one 2 ms after RESUME, then 50, 150, 250, 350 ms.
GOOD = [2, 52, 203, 454, 805]


def judge(frames, parameters=QEMU_DEFAULTS, port=STANDBY):
    return judge_announce(frames, parameters, RESUME_NS, MAC, port, TOLERANCE)


def test_parameters_give_qemus_gaps():
    assert QEMU_DEFAULTS.gaps_ms() == [50, 150, 250, 350]
    assert AnnounceParameters(30, 200, 3, 100).gaps_ms() == [30, 130]
    assert AnnounceParameters(50, 120, 4, 100).gaps_ms() == [50, 120, 120]  # capped by announce-max
    assert AnnounceParameters(50, 550, 0, 100).gaps_ms() == []
    assert AnnounceParameters.from_qmp({"announce-initial": 50, "announce-max": 550, "announce-rounds": 5,
                                        "announce-step": 100, "downtime-limit": 300}) == QEMU_DEFAULTS


def test_qemus_series_passes_on_both_ports():
    frames = series(GOOD) + series(GOOD, PRIMARY)
    verdict = judge(frames)
    assert verdict.problems == []
    assert verdict.kind == "rarp" and len(verdict.times_ns) == 5
    assert verdict.counts == {f"rarp@{STANDBY}": 5, f"rarp@{PRIMARY}": 5}
    assert count_announces(frames, MAC, STANDBY) == 5


def test_first_gap_shortened_by_the_flush_at_vm_start_passes():
    assert judge(series([2, 49.5, 200, 450, 801])).problems == []
    assert judge(series([2, 27.5, 158]), AnnounceParameters(30, 200, 3, 100)).problems == []


@pytest.mark.parametrize("fault, frames, parameters, words", [
    ("a round missing", series([2, 52, 203, 454]), QEMU_DEFAULTS, "4 rarp announce(s)"),
    ("a round too many", series(GOOD + [1360]), QEMU_DEFAULTS, "6 rarp announce(s)"),
    ("late first announce", series([600, 650, 800, 1050, 1400]), QEMU_DEFAULTS, "600.0 ms after RESUME"),
    ("constant spacing", series([2, 52, 102, 152, 202]), QEMU_DEFAULTS, "after round 2: 50.0 ms, expected 150"),
    ("spacing not capped", series([2, 32, 1032, 3032]), AnnounceParameters(30, 200, 4, 1000), "expected 200"),
    ("the defaults where 3 rounds were set", series(GOOD), AnnounceParameters(30, 200, 3, 100), "5 rarp"),
    ("no announce", [], QEMU_DEFAULTS, "no announce of 52:54:00:6f:55:cc"),
    ("announce-rounds 0", [], AnnounceParameters(50, 550, 0, 100), "announce-rounds is 0"),
    ("only on the primary's port", series(GOOD, PRIMARY), QEMU_DEFAULTS, "standby's port vt2"),
    ("the wrong MAC", series(GOOD, head=rarp(OTHER_MAC)), QEMU_DEFAULTS, OTHER_MAC),
    ("the frame's sender is another MAC", series(GOOD, head=rarp(MAC, sender=OTHER_MAC)), QEMU_DEFAULTS,
     "no announce"),
    ("frames to the guest are not announces", [Frame(f.t_ns, f.port, TO_GUEST, 60, f.head) for f in series(GOOD)],
     QEMU_DEFAULTS, "no announce"),
])
def test_seeded_faults_name_the_rule(fault, frames, parameters, words):
    verdict = judge(frames, parameters)
    message = "; ".join(verdict.problems)
    assert message.startswith("FO-MIG-TGT-03: "), f"{fault}: {message!r}"
    assert words in message, f"{fault}: {message!r}"


def test_wrong_mac_beside_a_good_series_is_reported():
    verdict = judge(series(GOOD) + series([3], head=rarp(OTHER_MAC)))
    assert any(OTHER_MAC in problem for problem in verdict.problems)


def test_guest_announce_is_judged_when_qemu_sends_no_rarp():
    verdict = judge(series(GOOD, head=garp()))
    assert verdict.kind == "garp" and verdict.problems == []
    probe = garp(address="0.0.0.0")  # an ARP probe is no announce
    assert judge(series(GOOD, head=probe)).kind is None


@pytest.mark.parametrize("head", [b"", b"\x01" * 13, rarp()[:20], rarp()[:41], garp()[:30], echo(1)[:36],
                                  echo(1)[:14] + b"\x4f" + b"\0" * 40, b"\xff" * 12 + b"\x81\x00",
                                  b"\xff" * 12 + b"\x08\x00" + b"\x41" + b"\0" * 30, random.Random(96).randbytes(96)])
def test_malformed_frames_decode_without_raising(head):
    fields = decode(head)
    assert "kind" in fields
    assert judge(series([2], head=head)).problems  # never an announce


def test_echoes_are_attributed_to_the_port_they_left_by():
    frames = [Frame(RESUME_NS + seq * MS, PRIMARY, FROM_GUEST, 106, echo(seq)) for seq in range(10)]
    frames += [Frame(RESUME_NS + 20 * MS, STANDBY, FROM_GUEST, 106, echo(20)),     # wrong port
               Frame(RESUME_NS + 21 * MS, PRIMARY, FROM_GUEST, 106, echo(3)),      # a duplicate of seq 3
               Frame(RESUME_NS + 22 * MS, PRIMARY, TO_GUEST, 106, echo(30)),       # to the guest: not an echo
               Frame(RESUME_NS + 23 * MS, PRIMARY, FROM_GUEST, 106, echo(31, sport=9)),
               Frame(RESUME_NS + 24 * MS, PRIMARY, FROM_GUEST, 106, echo(32, address="198.18.0.9"))]
    echoes = stream_echoes(frames, "198.18.0.2", 7777)
    assert [(port, seq) for _, port, seq in echoes][-2:] == [(STANDBY, 20), (PRIMARY, 3)]
    windows = [("first", RESUME_NS, RESUME_NS + 5 * MS), ("all", RESUME_NS, RESUME_NS + 100 * MS)]
    assert echoes_by_port(echoes, windows, [STANDBY, PRIMARY]) == {"first": {STANDBY: 0, PRIMARY: 5},
                                                                    "all": {STANDBY: 1, PRIMARY: 10}}


ROLES = {STANDBY: "net1", PRIMARY: "hostdev0"}


def test_echoes_by_the_expected_port_pass():
    assert echo_port_problems({STANDBY: 0, PRIMARY: 200}, PRIMARY, 200, ROLES, "FO-MIG-TGT-02/FO-DATA-01") == []


@pytest.mark.parametrize("fault, by_port, came_back, words", [
    ("echoes on the wrong port", {STANDBY: 200, PRIMARY: 0}, 200, "by net1 (vt2): 200 instead of hostdev0"),
    ("some echoes on the wrong port", {STANDBY: 3, PRIMARY: 197}, 200, "by net1 (vt2): 3"),
    ("fewer left than came back", {STANDBY: 0, PRIMARY: 150}, 200, "200 echoes came back to the peer but only 150"),
    ("an unknown port", {STANDBY: 0, PRIMARY: 200, "vt9": 1}, 200, "vt9 (vt9): 1"),
])
def test_echoes_on_the_wrong_port_name_the_rules(fault, by_port, came_back, words):
    problems = echo_port_problems(by_port, PRIMARY, came_back, ROLES, "FO-MIG-TGT-02/FO-DATA-01")
    message = "; ".join(problems)
    assert problems and all(p.startswith("FO-MIG-TGT-02/FO-DATA-01: ") for p in problems), f"{fault}: {message!r}"
    assert words in message, f"{fault}: {message!r}"


def test_capture_on_a_tap_records_time_port_and_direction():
    """A TAP in a namespace of its own: a frame written into it (as QEMU
    writes what the guest sends) is captured once, from the guest, with a
    monotonic time between the write's start and end; a write while the
    TAP is down fails (EIO) and nothing is captured for it."""
    if os.geteuid() != 0:
        pytest.skip("needs root (a network namespace and a TAP)")
    import time

    from vnetct.core.native import vnetct_native
    from vnetct.traffic.wire import WireCapture

    netns = f"vnetct-wiretest-{os.getpid()}"

    def run(*argv):
        status, output = vnetct_native.run_command(list(argv), 10.0)
        assert status.code == 0, f"{argv}: {output}"

    run("ip", "netns", "add", netns)
    try:
        run("ip", "-n", netns, "tuntap", "add", "dev", "wt0", "mode", "tap", "vnet_hdr")
        fd = vnetct_native.open_tap_in_netns(netns, "wt0")
        try:
            capture = WireCapture(netns, ["wt0"]).start()
            with pytest.raises(OSError):
                os.write(fd, bytes(10) + rarp())  # link down: the kernel refuses it
            run("ip", "-n", netns, "link", "set", "wt0", "up")
            before = time.monotonic_ns()
            os.write(fd, bytes(10) + rarp())  # a virtio-net header, then the frame
            after = time.monotonic_ns()
            frames = capture.wait_for(lambda fs: count_announces(fs, MAC, "wt0") >= 1, 5.0, "the RARP")
            capture.stop()
        finally:
            os.close(fd)
        announces = [f for f in frames if f.direction == FROM_GUEST]
        assert len(announces) == 1 and announces[0].port == "wt0" and announces[0].length == 60
        assert before - 1_000_000 <= announces[0].t_ns <= after + 1_000_000
        assert capture.summary()["kernel"]["wt0"]["drops"] == 0
    finally:
        run("ip", "netns", "del", netns)
