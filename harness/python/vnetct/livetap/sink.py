"""A live-TAP stream nobody echoes (the backends are sinks: Bench.echo_streams
False): half the work per frame of an echoed stream, for the rates this
two-core host cannot carry there and back. The readers report the seqs they
read as runs in reading order (StreamSeen::runs); laid end to end, holder
after holder, they are the arrivals the stream analysis judges (lost,
duplicated, reordered, loss windows by phase), as the echoes are for an
echoed stream. The TAP's tx_packets (frames its readers took) and tx_dropped
stay the kernel's witness beside them."""

from __future__ import annotations

import time
from typing import List, Tuple

from vnetct.core.native import vnetct_native


def read_arrivals(stream_id: int, readers, sent_ns: List[int]) -> Tuple[List[Tuple[int, int]], List[str]]:
    """(seq, t) for every seq the `readers` (Counters, in holding order) read of
    the stream, in reading order, and what makes the record incomplete. A
    reader's time is not known per frame: t is the seq's send time (the
    phases split the stream by send time; no RTT is claimed)."""
    arrivals, problems = [], []
    for index, counters in enumerate(readers):
        runs, complete = counters.runs.get(stream_id, ([], True))
        if not complete:
            problems.append(f"reader {index + 1} read the flow in more runs than it keeps (the record is "
                            f"truncated after seq {runs[-1][1] if runs else '-'})")
        for first, last in runs:
            if not 0 <= first <= last < len(sent_ns):
                problems.append(f"reader {index + 1} reports seqs {first}-{last}, the flow sent 0-{len(sent_ns) - 1}")
                continue
            arrivals.extend((seq, sent_ns[seq]) for seq in range(first, last + 1))
    return arrivals, problems


def analyze_read(traffic, phases: List[Tuple[str, int]], readers) -> Tuple[List[dict], List[str]]:
    """The stream reports of a sink's flows (one per flow, as Traffic.analyze
    gives for echoes), and the problems that leave them incomplete."""
    end = traffic.ended_ns or time.monotonic_ns()
    reports, problems = [], []
    for stream in traffic.streams:
        sent_ns = stream.sent_times()
        arrivals, incomplete = read_arrivals(stream.stream_id, readers, sent_ns)
        problems += [f"flow {stream.stream_id:016x}: {text}" for text in incomplete]
        reports.append(vnetct_native.analyze_stream(sent_ns, arrivals, phases, end, stream.rate_pps))
    return reports, problems


def wait_read_through(traffic, read_counters, timeout: float, poll_s: float = 0.005) -> bool:
    """Until the reader has read each flow's last seq (a queue is read in
    order: then every earlier frame of the flow was read or dropped), at most
    `timeout`; `read_counters()` is the reader's Counters now. False at the
    deadline (a last datagram lost): the loss is judged afterwards."""
    deadline = time.monotonic() + timeout
    while True:
        counters = read_counters()
        if all(counters.streams.get(stream.stream_id, (0, -1, 0))[1] >= traffic.count - 1
               for stream in traffic.streams):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)  # polls the reader's counters; bounded by the deadline
