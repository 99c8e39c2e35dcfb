"""Loss windows judged against the events that explain them.

A switch (a primary released, a migration's stop-and-resume, a primary
re-plugged) may cost the echo stream one burst of loss. A `LossBound` says
when that burst may start (not before the event that breaks the path),
when it must be over (the event that restores it, plus a stated allowance)
and how long it may last; every bound carries the sentence saying where it
comes from, printed with a violation. A loss window belongs to the phase in
which its first datagram was sent (stream_analysis.hpp), so a window that
runs on past its phase is judged whole by that phase's bound."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Set

# An echo in flight when its path breaks is lost although it was sent just
# before the break: the stream's RTT median is 1.7-3.5 ms on this machine
# (traffic.json rtt_median_ms, out-and-in, December 2026); 20 ms is several
# times that. When the path was slower as the loss began (the RTT of the last
# datagram before the window that came back; 209 ms seen on a loaded host),
# that latency is the allowance instead.
IN_FLIGHT_MS = 20.0
# After the event that restores the path, the guest needs this long to send
# by it: 50 datagrams at 200/s, time for a TCG guest to take over on the
# other slave (the project's recovery allowance since the first datapath case).
RECOVERY_MS = 250.0


@dataclass(frozen=True)
class LossBound:
    """Loss windows of one phase must start at or after `earliest_ns` minus
    the path's latency (at least IN_FLIGHT_MS), end by `latest_ns` and last
    at most `longest_ms`."""
    phase: str
    earliest: str          # the event before which nothing may be lost
    earliest_ns: int
    latest: str            # the event (with its allowance) by which the loss is over
    latest_ns: int
    longest_ms: float
    source: str            # where the three bounds come from

    def to_json(self) -> dict:
        return {"phase": self.phase, "earliest": self.earliest, "earliest_ns": self.earliest_ns,
                "latest": self.latest, "latest_ns": self.latest_ns, "longest_ms": self.longest_ms,
                "source": self.source}


def violations(windows: List[dict], bound: LossBound,
               latency_ms: Callable[[int], float] = lambda seq: 0.0) -> List[str]:
    """What the phase's loss windows break of `bound`, one sentence each.
    `latency_ms(seq)`: the path's round trip when datagram `seq` was sent
    (that of the last datagram before it that came back).

    A bound's edges assume an echo path of IN_FLIGHT_MS. A guest that falls
    behind (a TCG guest plugging a device: echoes 300-1100 ms late just
    before a re-plug's loss, here) still drops by the event's clock, so the
    datagrams it drops were sent up to its lag earlier: where the path was
    slower at an edge (the round trip before the window's first datagram, or
    of the first one after it), that edge, and the length with it, moves by
    the difference."""
    found = []
    for window in windows:
        span = (f"seq {window['first_seq']}-{window['last_seq']} ({window['count']} datagrams, "
                f"{window['duration_ms']:.0f} ms)")
        allowed_ms = max(IN_FLIGHT_MS, latency_ms(window["first_seq"]))
        lag_after_ms = max(0.0, latency_ms(window["last_seq"] + 2) - IN_FLIGHT_MS)
        early_ms = (bound.earliest_ns - window["start_ns"]) / 1e6
        if early_ms > allowed_ms:
            found.append(f"{bound.phase}: loss {span} began {early_ms:.0f} ms before {bound.earliest} (the path's "
                         f"latency then: {allowed_ms:.0f} ms)")
        late_ms = (window["end_ns"] - bound.latest_ns) / 1e6
        if late_ms > lag_after_ms:
            found.append(f"{bound.phase}: loss {span} lasted {late_ms:.0f} ms past {bound.latest}"
                         + (f" (the path then {lag_after_ms:.0f} ms slower than {IN_FLIGHT_MS:.0f} ms)"
                            if lag_after_ms else ""))
        longest_ms = bound.longest_ms + (allowed_ms - IN_FLIGHT_MS) + lag_after_ms
        if window["duration_ms"] > longest_ms:
            found.append(f"{bound.phase}: loss {span} is longer than {longest_ms:.0f} ms"
                         + (f" ({bound.longest_ms:.0f} ms, the edges moved by the path's latency)"
                            if longest_ms > bound.longest_ms else ""))
    if found:
        found[-1] += f" [bounds: {bound.source}]"
    return found


def margins(windows: List[dict], bound: LossBound) -> Optional[dict]:
    """How close the phase's worst window came to each bound (ms; negative:
    inside), for the metrics; None without a window."""
    if not windows:
        return None
    return {"start_before_earliest": max((bound.earliest_ns - w["start_ns"]) / 1e6 for w in windows),
            "end_after_latest": max((w["end_ns"] - bound.latest_ns) / 1e6 for w in windows),
            "longest": max(w["duration_ms"] for w in windows)}


def undelivered(windows: List[dict], delivered: Set[int], sent_ns: Sequence[int]) -> List[dict]:
    """The loss windows left once the datagrams in `delivered` are taken out:
    those the host is shown to have handed to the guest's device (seen leaving
    by the guest's TAP, which dropped nothing), whose echo the guest then did
    not send. What remains is the loss the host is answerable for, in windows
    built as the stream analysis builds them (a window ends at the send time
    of the datagram after it)."""
    remaining = []
    for window in windows:
        run: List[int] = []
        for seq in range(window["first_seq"], window["last_seq"] + 1):
            if seq not in delivered:
                run.append(seq)
                continue
            if run:
                remaining.append(_window(run, sent_ns))
                run = []
        if run:
            remaining.append(_window(run, sent_ns, end_ns=window["end_ns"]))
    return remaining


def _window(seqs: List[int], sent_ns: Sequence[int], end_ns: Optional[int] = None) -> dict:
    first, last = seqs[0], seqs[-1]
    end = end_ns if end_ns is not None else sent_ns[last + 1]
    return {"first_seq": first, "last_seq": last, "count": len(seqs), "start_ns": sent_ns[first], "end_ns": end,
            "duration_ms": (end - sent_ns[first]) / 1e6}
