"""A second opinion on a live-TAP migration's loss: the series' own
functional test's judgement (QEMU tests/functional/x86_64/test_tap_migration.py,
as queued for 11.2), recomputed from vnetct's echo stream.

Upstream pings the guest as fast as it answers, notes the time just before
`migrate` (migrate start) and just after the target's `cont` (here the
target runs by itself once the state has arrived: its RESUME), and judges:
- with a loss: the span from the first to the last unanswered ping must lie
  within [migrate start, cont] widened by 50 ms on each side;
- without a loss: the stream must have run across the whole freeze (its
  first datagram before migrate start, its last after cont).
vnetct's own bounds stay the rule (vnetct.traffic.continuity, the cases):
this opinion is recorded beside them (results.json `second_opinions`,
reports/RESULTS.md) and never changes a case's outcome."""

from __future__ import annotations

from typing import List, Optional, Sequence

NAME = "upstream-tap-migration"
JUDGE = "QEMU tests/functional/x86_64/test_tap_migration.py (the live-TAP series' own test)"
MARGIN_MS = 50.0
# The settle phase's loss is the stream's start-up, which upstream's test does
# not see either (it pings once each way before its stream starts).
UNJUDGED_PHASES = ("settle",)


def _ms(ns: int, origin_ns: int) -> float:
    return round((ns - origin_ns) / 1e6, 1)


def judge(report: dict, migrate_ns: int, cont_ns: int, sent_ns: Optional[Sequence[int]] = None,
          cont: str = "RESUME (target)") -> dict:
    """Upstream's verdict on one migration. `report`: the echo stream's
    analysis (phases with loss windows, host monotonic ns); `migrate_ns`,
    `cont_ns`: migrate start and upstream's cont (`cont` says which event
    stands for it: the target's RESUME, or after it the moment a new TAP
    joined the wire, as upstream switches the network before cont); `sent_ns`: each
    datagram's send time (the last lost datagram's time; without it a
    window ends at its first echoed datagram, one interval later). Times in
    the record are ms from migrate start."""
    phases = [p for p in report["phases"] if p["name"] not in UNJUDGED_PHASES]
    windows: List[dict] = [w for p in phases for w in p["loss_windows"]]
    record = {"judge": JUDGE, "margin_ms": MARGIN_MS, "origin": "migrate start", "cont": cont,
              "cont_ms": _ms(cont_ns, migrate_ns), "lost": sum(w["count"] for w in windows)}
    if not windows:
        first_ns, last_ns = phases[0]["start_ns"], phases[-1]["end_ns"]
        covered = first_ns <= migrate_ns and last_ns >= cont_ns
        return {**record, "verdict": "pass" if covered else "fail",
                "stream_ms": [_ms(first_ns, migrate_ns), _ms(last_ns, migrate_ns)], "loss_ms": None,
                "reason": ("no loss, and the stream ran across the freeze" if covered else
                           f"no loss, but the stream ({_ms(first_ns, migrate_ns)}..{_ms(last_ns, migrate_ns)} ms) "
                           f"did not run across the freeze (0..{record['cont_ms']} ms)")}
    first_ns = min(w["start_ns"] for w in windows)
    last = max(windows, key=lambda w: w["end_ns"])
    last_ns = sent_ns[last["last_seq"]] if sent_ns is not None else last["end_ns"]
    early_ms = (migrate_ns - first_ns) / 1e6
    late_ms = (last_ns - cont_ns) / 1e6
    broken = []
    if early_ms > MARGIN_MS:
        broken.append(f"the loss began {early_ms:.1f} ms before migrate start")
    if late_ms > MARGIN_MS:
        broken.append(f"the loss ended {late_ms:.1f} ms after cont")
    span = (f"loss {_ms(first_ns, migrate_ns)}..{_ms(last_ns, migrate_ns)} ms ({record['lost']} datagrams in "
            f"{len(windows)} windows), freeze 0..{record['cont_ms']} ms ± {MARGIN_MS:.0f} ms")
    return {**record, "verdict": "fail" if broken else "pass",
            "loss_ms": [_ms(first_ns, migrate_ns), _ms(last_ns, migrate_ns)], "stream_ms": None,
            "reason": f"{'; '.join(broken)}: {span}" if broken else f"within the freeze: {span}"}


def record(case, report: dict, migrate_ns: int, cont_ns: int, sent_ns: Optional[Sequence[int]] = None,
           cont: str = "RESUME (target)") -> dict:
    """judge(), recorded in the case's results as a second opinion (and a step)."""
    opinion = judge(report, migrate_ns, cont_ns, sent_ns, cont)
    case.second_opinion(NAME, opinion)
    case.step(f"second opinion ({NAME}, not the verdict): {opinion['verdict']}, {opinion['reason']}")
    return opinion
