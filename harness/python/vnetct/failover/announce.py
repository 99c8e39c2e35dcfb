"""FO-MIG-TGT-03: after RESUME the target announces the standby's MAC on the
wire, with the migration's announce parameters, judged from the frames the
host captured on the target's TAPs (vnetct.traffic.wire).

What QEMU does (net/announce.c, migration/migration.c, hw/net/virtio-net.c,
qapi/migration.json; QEMU 10.0):
- Self-announce: when the incoming state is loaded, in the bottom half that
  then starts the VM (just before the RESUME event), the target starts
  round one; while the VM is stopped QEMU's net layer queues a NIC's frames,
  so round one reaches the TAP when vm_start flushes them. Each round, every NIC sends one 60-byte RARP frame: broadcast,
  ethertype 0x8035, opcode 3 (request reverse), Ethernet source, sender and
  target hardware address all the NIC's MAC, protocol addresses 0.0.0.0.
  Later rounds run on a QEMU_CLOCK_REALTIME timer: the gap after round k
  (k = 1..rounds-1) is announce-initial + (k-1) * announce-step, capped at
  announce-max. Defaults: initial 50 ms, max 550 ms, rounds 5, step 100 ms
  (gaps 50, 150, 250, 350 ms). announce-rounds 0: nothing is sent.
- Guest announce: a virtio-net NIC whose guest negotiated
  VIRTIO_NET_F_GUEST_ANNOUNCE (bit 21) and VIRTIO_NET_F_CTRL_VQ (bit 17)
  also asks the guest (config status VIRTIO_NET_S_ANNOUNCE) with the same
  parameters on the guest's clock; the guest sends gratuitous ARP for its
  addresses and acks. QEMU 10.0 sends its RARP rounds in both cases.
- The parameters are migration parameters of the target (the incoming side
  uses its own): query-migrate-parameters announce-initial/-max/-rounds/-step.

The judge takes QEMU's RARP series on the standby's port when there is one,
else the guest's gratuitous ARPs there (a SUT that only asks the guest)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable, List, Optional

from vnetct.traffic.wire import ARP_OP_REPLY, ARP_OP_REQUEST, FROM_GUEST, RARP_OP_REQUEST, Frame, decode

RULE = "FO-MIG-TGT-03"
PARAMETER_NAMES = ("announce-initial", "announce-max", "announce-rounds", "announce-step")


@dataclass(frozen=True)
class AnnounceParameters:
    initial_ms: int
    max_ms: int
    rounds: int
    step_ms: int

    @classmethod
    def from_qmp(cls, parameters: dict) -> "AnnounceParameters":
        missing = [name for name in PARAMETER_NAMES if name not in parameters]
        if missing:
            raise KeyError(f"query-migrate-parameters has no {', '.join(missing)}")
        return cls(int(parameters["announce-initial"]), int(parameters["announce-max"]),
                   int(parameters["announce-rounds"]), int(parameters["announce-step"]))

    def gaps_ms(self) -> List[int]:
        """The expected gap after each round but the last."""
        gaps = []
        for k in range(max(0, self.rounds - 1)):
            gap = self.initial_ms + k * self.step_ms
            gaps.append(self.max_ms if gap < 0 or gap > self.max_ms else gap)
        return gaps

    def to_json(self) -> dict:
        return {"announce-initial": self.initial_ms, "announce-max": self.max_ms,
                "announce-rounds": self.rounds, "announce-step": self.step_ms}


QEMU_DEFAULTS = AnnounceParameters(initial_ms=50, max_ms=550, rounds=5, step_ms=100)


def read_parameters(vm) -> AnnounceParameters:
    """The announce parameters `vm` (the target) will use, read back over QMP."""
    return AnnounceParameters.from_qmp(vm.qmp.execute("query-migrate-parameters"))


@dataclass(frozen=True)
class Tolerance:
    """How far the measured times may stray from the parameters. `late_ms`:
    a timer of QEMU's main loop fires late when the loop is busy (TCG: the
    vCPU thread takes the big lock for every device access; on this 2-core
    machine five workers' QEMUs compete), and the RESUME event is timed when
    the harness reads it, after QEMU wrote it. `early_ms`: QEMU arms the
    timer in whole milliseconds from a millisecond clock read, so a gap can
    be shorter by up to 1 ms; the kernel's frame stamps add microseconds.
    `first_gap_early_ms`: round one is queued, not sent, while the VM is
    still stopped (QEMU's net queue holds a NIC's frames until the VM runs;
    vm_start flushes them), but the timer of round two is armed when round
    one was queued: the first gap on the wire is shorter by the time from
    the announce to vm_start in the same bottom half."""
    late_ms: float
    early_ms: float = 2.0
    first_gap_early_ms: float = 2.0
    source: str = ""


def is_announce(fields: dict, mac: str) -> Optional[str]:
    """'rarp' for QEMU's self-announce of `mac`, 'garp' for a gratuitous ARP
    of `mac` (sender IP = target IP), None for anything else."""
    if fields.get("src") != mac or fields.get("hwsrc") != mac or fields.get("hwlen") != 6:
        return None
    if fields.get("kind") == "rarp" and fields.get("op") == RARP_OP_REQUEST:
        return "rarp"
    if fields.get("kind") == "arp" and fields.get("op") in (ARP_OP_REQUEST, ARP_OP_REPLY) and \
            fields.get("psrc") == fields.get("pdst") and fields.get("psrc") != "0.0.0.0":
        return "garp"
    return None


@dataclass
class AnnounceVerdict:
    port: str
    mac: str
    parameters: AnnounceParameters
    resume_ns: int
    kind: Optional[str] = None               # the series judged: rarp or garp
    times_ns: List[int] = field(default_factory=list)
    first_after_resume_ms: Optional[float] = None
    gaps_ms: List[float] = field(default_factory=list)
    expected_gaps_ms: List[int] = field(default_factory=list)
    other_macs: List[str] = field(default_factory=list)  # announce-shaped frames of another MAC on the port
    counts: dict = field(default_factory=dict)            # per kind and port, for the record
    problems: List[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"rule": RULE, "port": self.port, "mac": self.mac, "parameters": self.parameters.to_json(),
                "resume_ns": self.resume_ns, "kind": self.kind, "times_ns": self.times_ns,
                "first_after_resume_ms": self.first_after_resume_ms, "gaps_ms": self.gaps_ms,
                "expected_gaps_ms": self.expected_gaps_ms, "other_macs": self.other_macs,
                "counts": self.counts, "problems": self.problems}


def judge_announce(frames: Iterable[Frame], parameters: AnnounceParameters, resume_ns: int, mac: str,
                   port: str, tolerance: Tolerance, since_ns: int = 0) -> AnnounceVerdict:
    """FO-MIG-TGT-03 on the frames the guest side sent by `port` (the
    standby's TAP) from `since_ns` (the migrate command) on: at least one
    announce of `mac`; the first at most announce-initial after RESUME;
    announce-rounds in all; each gap as the parameters give it. The
    problems found are in the verdict, each naming the rule."""
    verdict = AnnounceVerdict(port, mac, parameters, resume_ns, expected_gaps_ms=parameters.gaps_ms())
    series = {"rarp": [], "garp": []}
    for frame in frames:
        if frame.direction != FROM_GUEST or frame.t_ns < since_ns:
            continue
        fields = decode(frame.head)
        kind = is_announce(fields, mac)
        if kind is not None:
            key = f"{kind}@{frame.port}"
            verdict.counts[key] = verdict.counts.get(key, 0) + 1
            if frame.port == port:
                series[kind].append(frame.t_ns)
        elif frame.port == port and fields.get("kind") in ("rarp", "arp") and fields.get("src") != mac and \
                fields.get("op") in (ARP_OP_REQUEST, ARP_OP_REPLY, RARP_OP_REQUEST):
            verdict.other_macs.append(fields.get("src"))
    verdict.kind = "rarp" if series["rarp"] else ("garp" if series["garp"] else None)
    times = sorted(series[verdict.kind]) if verdict.kind else []
    verdict.times_ns = times
    rounds = parameters.rounds
    if not times:
        seen = f"; announce-shaped frames of other MACs there: {sorted(set(verdict.other_macs))}" \
            if verdict.other_macs else ""
        told = " (announce-rounds is 0: the target was told not to announce)" if rounds == 0 else ""
        verdict.problems.append(f"{RULE}: no announce of {mac} (RARP or gratuitous ARP) left the target by "
                                f"its standby's port {port} after the migration began{told}{seen}")
        return verdict
    verdict.first_after_resume_ms = round((times[0] - resume_ns) / 1e6, 3)
    if verdict.first_after_resume_ms > parameters.initial_ms + tolerance.late_ms:
        verdict.problems.append(
            f"{RULE}: the first announce of {mac} on {port} came {verdict.first_after_resume_ms:.1f} ms after "
            f"RESUME; announce-initial is {parameters.initial_ms} ms (+{tolerance.late_ms:.0f} ms tolerance)")
    if len(times) != rounds:
        verdict.problems.append(f"{RULE}: {len(times)} {verdict.kind} announce(s) of {mac} on {port}; "
                                f"announce-rounds is {rounds}")
    verdict.gaps_ms = [round((later - earlier) / 1e6, 3) for earlier, later in zip(times, times[1:])]
    wrong = []
    for index, (gap, expected) in enumerate(zip(verdict.gaps_ms, verdict.expected_gaps_ms)):
        early = tolerance.first_gap_early_ms if index == 0 else tolerance.early_ms
        if not expected - early <= gap <= expected + tolerance.late_ms:
            wrong.append(f"after round {index + 1}: {gap:.1f} ms, expected {expected} ms")
    if wrong:
        verdict.problems.append(
            f"{RULE}: announce spacing on {port} does not follow announce-initial {parameters.initial_ms} ms "
            f"+ announce-step {parameters.step_ms} ms up to announce-max {parameters.max_ms} ms "
            f"(-{tolerance.early_ms:.0f} ms, the first -{tolerance.first_gap_early_ms:.0f} ms; "
            f"+{tolerance.late_ms:.0f} ms): {'; '.join(wrong)}")
    if verdict.other_macs:
        verdict.problems.append(f"{RULE}: announce-shaped frames of other MACs on the standby's port {port}: "
                                f"{sorted(set(verdict.other_macs))} (expected only {mac})")
    return verdict


def announce_times(frames: Iterable[Frame], mac: str, port: str, since_ns: int = 0) -> List[int]:
    """Times of the announce frames of `mac` the guest side sent by `port` from `since_ns` on."""
    return [frame.t_ns for frame in frames
            if frame.port == port and frame.direction == FROM_GUEST and frame.t_ns >= since_ns and
            frame.head[12:14] in (b"\x08\x06", b"\x80\x35") and is_announce(decode(frame.head), mac)]


def count_announces(frames: Iterable[Frame], mac: str, port: str, since_ns: int = 0) -> int:
    return len(announce_times(frames, mac, port, since_ns))


def await_announces(capture, parameters: AnnounceParameters, resume_ns: int, mac: str, port: str,
                    tolerance: Tolerance, since_ns: int = 0) -> None:
    """Waits for the series on `port` round by round, each wait bounded by
    the rule: the first by RESUME + announce-initial, each next one by the
    previous one + its gap, plus the tolerance; after announce-rounds, one
    gap of announce-max (+ tolerance) more for a round too many. Returns at
    the first round that does not come: the judge says what is wrong."""
    gaps = parameters.gaps_ms() + [parameters.max_ms]
    due_ns = resume_ns + (parameters.initial_ms + tolerance.late_ms) * 1_000_000
    for seen in range(parameters.rounds + 1):
        try:
            frames = capture.wait_for(lambda frames: count_announces(frames, mac, port, since_ns) > seen,
                                      max(0.0, (due_ns - time.monotonic_ns()) / 1e9),
                                      f"announce {seen + 1} of {mac} on {port}")
        except TimeoutError:
            return
        last_ns = announce_times(frames, mac, port, since_ns)[seen]
        due_ns = last_ns + (gaps[min(seen, len(gaps) - 1)] + tolerance.late_ms) * 1_000_000


def assert_announced(verdict: AnnounceVerdict) -> None:
    assert not verdict.problems, "; ".join(verdict.problems)
