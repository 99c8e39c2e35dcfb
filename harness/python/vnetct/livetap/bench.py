"""Live-TAP hand-off against the reference backend (reference_impl/livetap,
the `livetap_backend` binary): the backend processes a case drives by control
lines, the TAP's counters as the kernel reports them, and the paced,
sequence-numbered UDP streams that judge the datapath.

A `Bench` belongs to one case (fixture `livetap_bench`): every backend process
(one process group each) and every stream it starts is stopped when the case
ends, pass or fail, and a survivor fails the case. The wire (a namespace with
a bridge, a persistent TAP and the peer 198.18.0.1) comes from the case's
vm_factory, which deletes it."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from vnetct.core import paths
from vnetct.core.native import vnetct_native
from vnetct.livetap.tap_readings import Link, ip_in, read_features, read_link

BACKEND = paths.BUILD / "reference_impl" / "livetap" / "livetap_backend"
GUEST_ADDRESS = "198.18.0.2"  # the backend's GuestIdentity
ECHO_PORT = 7  # any port: the backend echoes every UDP datagram to its address
# TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 (linux/if_tun.h), what QEMU sets for a virtio-net guest
OFFLOADS = 0x01 | 0x02 | 0x04
HEADER_BYTES = 14 + 20 + 8  # Ethernet, IPv4, UDP: a payload of 1472 fills a 1500-byte MTU


def fields(text: str) -> Dict[str, str]:
    """The key=value words of a control line."""
    return dict(word.split("=", 1) for word in text.split() if "=" in word)


@dataclass
class Counters:
    """What one backend's readers saw (the <counters> of backend.hpp)."""
    frames: int
    echoed: int
    queue_frames: List[int]
    streams: Dict[int, Tuple[int, int, int]]  # stream id -> (first seq, last seq, frames)
    raw: Dict[str, str] = field(default_factory=dict)
    # stream id -> the seqs read as runs [(first, last)] in reading order, and whether
    # the reader kept them all (StreamSeen::runs): what a sink received (vnetct.livetap.sink)
    runs: Dict[int, Tuple[List[Tuple[int, int]], bool]] = field(default_factory=dict)

    @staticmethod
    def parse(line: str) -> "Counters":
        found = fields(line)
        streams = {}
        if found.get("streams", "-") != "-":
            for entry in found["streams"].split(";"):
                ident, span, frames = entry.split(":")
                first, last = span.split("-")
                streams[int(ident, 16)] = (int(first), int(last), int(frames))
        queues = [] if found.get("queue_frames", "-") == "-" else [int(n) for n in found["queue_frames"].split(",")]
        runs = {}
        if found.get("runs", "-") != "-":
            for entry in found["runs"].split(";"):
                ident, spans = entry.split(":")
                parts = spans.split(",")
                kept = [tuple(int(n) for n in part.split("-")) for part in parts if part != "..."]
                runs[int(ident, 16)] = (kept, "..." not in parts)
        return Counters(int(found["frames"]), int(found["echoed"]), queues, streams, found, runs)


def reader_counters(holder) -> "Counters":
    """The serving backend's counters now."""
    holder.send("counters")
    return Counters.parse(holder.expect("counters "))


def per_flow_checks(traffic, reports, readers):
    """Per flow: (sent, lost, duplicates, reordered, unread by every reader)."""
    rows = []
    for stream, report in zip(traffic.streams, reports):
        overall = report["overall"]
        read = sum(counters.streams.get(stream.stream_id, (0, 0, 0))[2] for counters in readers)
        rows.append({"flow": f"{stream.stream_id:016x}", "sent": overall["sent"], "lost": overall["lost"],
                     "duplicates": overall["duplicates"], "reordered": overall["reordered"],
                     "read_by_backends": read, "never_read": overall["sent"] - read,
                     "loss_windows": [(w["first_seq"], w["last_seq"], w["count"]) for w in overall["loss_windows"]]})
    return rows


def describe_flows(rows) -> str:
    return "; ".join(f"flow {r['flow']}: sent {r['sent']} lost {r['lost']} dup {r['duplicates']} "
                     f"reordered {r['reordered']} never read {r['never_read']} windows {r['loss_windows'][:3]}"
                     for r in rows)


def quiet_reading(bench, tap, holder):
    """The TAP's counters and the serving backend's, read together once the
    traffic ended (the TAP still held: closing it changes the carrier).
    Both TAP readings must agree, or something still flowed."""
    readings = []
    for _ in range(3):  # a stray frame (an ARP probe) between the readings: read again
        first = bench.link(tap)
        counters = reader_counters(holder)
        second = bench.link(tap)
        readings.append((first.tx_packets, counters.frames, second.tx_packets))
        if first.tx_packets == second.tx_packets:
            return second, counters
    raise AssertionError(f"frames kept flowing after the traffic ended (tx_packets, frames read, tx_packets): "
                         f"{readings}")


def tap_state(line: str) -> str:
    """The TAP state of a ready/serving line, without the times."""
    return " ".join(word for word in line.split() if not word.startswith(("serving_ns=", "stamps=", "realtime=")))


def parse_stamps(line: str) -> Dict[str, int]:
    """The hand-off steps a control line stamped ("stamps=name:ns,...", see
    handoff_stamps.hpp): step -> CLOCK_MONOTONIC ns."""
    text = fields(line).get("stamps", "-")
    return {} if text == "-" else {name: int(ns) for name, ns in (entry.split(":") for entry in text.split(","))}


# The steps of a hand-off inside its blackout, in the protocol's order (the
# stamps of backend.hpp's committed/serving lines). A message's arrival marks
# its step, not its sending: the sender may be descheduled between its send
# and its stamp while the receiver already goes on.
BLACKOUT_STEPS = ("offer_sent", "offer_received", "queues_read", "distinct_checked", "identity_checked",
                  "accept_received", "commit_received", "nic_spawned", "reader_polling")


@dataclass(frozen=True)
class Committed:
    """The holder's side of a hand-off: it stopped reading and committed."""
    counters: Counters          # what the holder read until then
    stopped_reading_ns: int
    committed_ns: int
    stamps: Dict[str, int] = field(default_factory=dict)  # the holder's steps
    realtime: bool = False      # the holder ran its blackout at SCHED_FIFO (realtime_window.hpp)

    @classmethod
    def from_line(cls, line: str) -> "Committed":
        """The holder's "committed ..." line (backend.hpp)."""
        said = fields(line)
        return cls(Counters.parse(line), int(said["stopped_reading_ns"]), int(said["committed_ns"]),
                   parse_stamps(line), said.get("realtime") == "1")


@dataclass(frozen=True)
class HandOff:
    """One hand-off, as the holder and the target reported it."""
    source: Counters            # what the holder read until it stopped
    stopped_reading_ns: int
    committed_ns: int
    serving_ns: int             # the target reads from here on
    state: str                  # the TAP state the target serves with
    stamps: Dict[str, int] = field(default_factory=dict)  # both sides' steps (parse_stamps)
    realtime: Dict[str, bool] = field(default_factory=dict)  # {"source", "target"}: ran the window at SCHED_FIFO

    @classmethod
    def from_lines(cls, committed: Committed, serving: str) -> "HandOff":
        """The hand-off from the holder's side and the target's "serving ..." line."""
        return cls(committed.counters, committed.stopped_reading_ns, committed.committed_ns,
                   int(fields(serving)["serving_ns"]), tap_state(serving.removeprefix("serving ")),
                   {**committed.stamps, **parse_stamps(serving)},
                   {"source": committed.realtime, "target": fields(serving).get("realtime") == "1"})

    @property
    def blackout_us(self) -> float:
        return round((self.serving_ns - self.stopped_reading_ns) / 1e3, 1)

    def breakdown_us(self) -> List[Tuple[str, float]]:
        """The blackout split at the steps stamped inside it, in the
        protocol's order (BLACKOUT_STEPS): ("step -> next step", us) from the
        source's stop to the target's serving; they add up to blackout_us."""
        points = [("stopped", self.stopped_reading_ns)]
        points += [(name, self.stamps[name]) for name in BLACKOUT_STEPS
                   if name in self.stamps and self.stopped_reading_ns < self.stamps[name] < self.serving_ns]
        points.append(("serving", self.serving_ns))
        return [(f"{a} -> {b}", round((b_ns - a_ns) / 1e3, 1)) for (a, a_ns), (b, b_ns) in zip(points, points[1:])]

    def priority(self) -> str:
        """How the window was scheduled (realtime_window.hpp): both sides at
        SCHED_FIFO, each on a CPU of its own, or which side was not."""
        normal = [side for side in ("source", "target") if not self.realtime.get(side)]
        return "real-time on both sides" if not normal else f"normal priority: {' and '.join(normal)}"

    def phases(self, started_ns: int, label: str = "handoff") -> List[Tuple[str, int]]:
        """The traffic phases around this hand-off: before, the hand-off, after."""
        return [("before", started_ns), (label, self.stopped_reading_ns), ("after", self.serving_ns)]


class Backend:
    """One livetap_backend process, driven by lines on its stdin; every line
    both ways is kept with its time (transcript)."""

    def __init__(self, name: str, argv: List[str], artifacts: Path):
        self.name = name
        self.argv = argv
        self.transcript: List[dict] = []
        self._buffer = b""
        self._stderr_path = artifacts / f"backend-{name}.stderr"
        with open(self._stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                            process_group=0, close_fds=True)
        os.set_blocking(self.process.stdout.fileno(), False)
        self._record("spawned", " ".join(argv))

    def _record(self, direction: str, line: str) -> None:
        self.transcript.append({"t_ns": time.monotonic_ns(), "dir": direction, "line": line})

    def send(self, line: str) -> int:
        """Sends one command; returns the monotonic time it was written."""
        self._record("in", line)
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()
        return time.monotonic_ns()

    def expect(self, prefix: str, timeout: float = 10.0) -> str:
        """The next line, which must start with `prefix` (a "failed" or
        "error" line, another line, the end of output or the deadline fail
        saying what came instead)."""
        line = self._next_line(timeout, f"a line starting with '{prefix}'")
        if not line.startswith(prefix):
            raise AssertionError(f"backend {self.name}: expected '{prefix}...', got '{line}'")
        return line

    def ask(self, command: str, reply: str, timeout: float = 10.0) -> Dict[str, str]:
        """Sends `command` and returns the fields of the reply, which must
        start with `reply` (the whole line under "line")."""
        self.send(command)
        line = self.expect(reply, timeout)
        return {**fields(line), "line": line}

    def _next_line(self, timeout: float, awaited: str) -> str:
        deadline = time.monotonic() + timeout
        stdout = self.process.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([stdout], [], [], max(0.0, left))
            if not ready:
                raise AssertionError(f"backend {self.name}: waited {timeout:.1f} s for {awaited}; "
                                     f"saw '{self._buffer.decode(errors='replace')}' ({self.describe_exit()})")
            chunk = os.read(stdout, 65536)
            if not chunk:
                self.process.wait(timeout=5)
                raise AssertionError(f"backend {self.name}: output ended while waiting for {awaited} "
                                     f"({self.describe_exit()}); stderr: {self.stderr()[-500:]}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\n", 1)
        line = raw.decode(errors="replace")
        self._record("out", line)
        return line

    def close_input(self) -> None:
        if not self.process.stdin.closed:
            self._record("in", "<end of input>")
            self.process.stdin.close()

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"backend {self.name} did not exit within {timeout:.1f} s") from None

    def kill(self) -> None:
        """SIGKILL to its process group; reaped."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._record("signal", "SIGKILL")
        self.process.wait(timeout=10)

    def describe_exit(self) -> str:
        code = self.process.poll()
        return "running" if code is None else f"exited {code}"

    def stderr(self) -> str:
        try:
            return self._stderr_path.read_text(errors="replace")
        except OSError:
            return ""


class Traffic:
    """Paced, sequence-numbered UDP streams from the peer to the backend, one
    flow each (several flows spread over the queues of a multi-queue TAP)."""

    def __init__(self, netns: str, rate_pps: float, payload_bytes: int, seconds: float, flows: int = 1,
                 echoed: bool = True):
        self.netns = netns
        # False: the backends are sinks (Bench.echo_streams): nothing comes back, the
        # stream is judged by the seqs the readers read (vnetct.livetap.sink).
        self.echoed = echoed
        self.rate_pps = rate_pps
        self.payload_bytes = payload_bytes
        self.count = int(rate_pps * seconds / flows)
        self.streams = []
        for _ in range(flows):
            fd = vnetct_native.open_socket_in_netns(netns, socket.AF_INET, socket.SOCK_DGRAM)
            self.streams.append(vnetct_native.UdpStream(fd, GUEST_ADDRESS, ECHO_PORT, rate_pps / flows,
                                                        payload_bytes, self.count))
        self.started_ns = 0
        self.ended_ns = 0

    def resolve_guest(self, timeout: float = 5.0) -> None:
        """One datagram that belongs to no stream (no stream magic), and its
        echo: then the peer has resolved the guest's address. A stream that
        starts unresolved parks its first datagrams on the peer's neighbour
        entry; the ARP reply flushes them from softirq on one CPU while the
        injector sends the next ones from the other CPU, and a few arrive
        after later ones (reordered 1-81, all within the stream's first
        10 ms) although no queue reordered anything."""
        fd = vnetct_native.open_socket_in_netns(self.netns, socket.AF_INET, socket.SOCK_DGRAM)
        with socket.socket(fileno=fd) as probe:
            probe.settimeout(timeout)
            probe.sendto(b"resolve", (GUEST_ADDRESS, ECHO_PORT))
            try:
                probe.recv(64)
            except socket.timeout:
                raise AssertionError(f"no echo of a single datagram from {GUEST_ADDRESS} within {timeout:.0f} s: "
                                     f"the peer cannot reach the guest") from None

    def start(self, timeout: float = 5.0) -> None:
        self.resolve_guest(timeout)
        self.started_ns = time.monotonic_ns()
        for stream in self.streams:
            stream.start()
        for stream in self.streams if self.echoed else ():
            if not stream.wait_received(1, timeout):
                raise AssertionError(f"no echo from {GUEST_ADDRESS} within {timeout:.0f} s "
                                     f"({stream.sent} sent, send errors {stream.send_errors})")

    def wait_echoed(self, per_flow: int, timeout: float, required: bool = True) -> None:
        """Until every flow had `per_flow` datagrams echoed (not `required`:
        at most `timeout`, then go on; the loss is judged afterwards)."""
        for stream in self.streams:
            if not stream.wait_received(per_flow, timeout) and required:
                raise AssertionError(f"{per_flow} echoes per flow expected within {timeout:.1f} s; flow "
                                     f"{stream.stream_id:016x}: {stream.received} of {stream.sent}")

    def wait_progress(self, per_flow: int, timeout: float) -> None:
        """Until every flow had `per_flow` datagrams echoed (a sink: sent), or
        at most `timeout`: the moment of a step into the stream; the loss is
        judged afterwards."""
        for stream in self.streams:
            (stream.wait_received if self.echoed else stream.wait_sent)(per_flow, max(0.0, timeout))

    def finish(self, timeout: float, drain_s: float = 0.2) -> None:
        """Until every flow sent its count and (at most `timeout` more) every
        echo came back; then stop."""
        for stream in self.streams:
            if not stream.wait_sending_done(timeout):
                raise AssertionError(f"flow {stream.stream_id:016x} still sending after {timeout:.1f} s "
                                     f"({stream.sent} of {self.count}): the injector cannot keep the rate")
        for stream in self.streams if self.echoed else ():
            stream.wait_received(self.count, drain_s)
        self.ended_ns = time.monotonic_ns()
        self.stop()

    def stop(self) -> None:
        for stream in self.streams:
            stream.stop(0.0)

    def analyze(self, phases: List[Tuple[str, int]]) -> List[dict]:
        end = self.ended_ns or time.monotonic_ns()
        return [stream.analyze(phases, end) for stream in self.streams]

    def merged_arrivals(self) -> List[int]:
        return sorted(t for stream in self.streams for _, t in stream.arrivals())

    def longest_gap_ns(self, start_ns: int, end_ns: int) -> int:
        """The longest silence between consecutive echoes (all flows) that
        overlaps [start_ns, end_ns]: the blackout as the peer sees it."""
        times = self.merged_arrivals()
        longest = 0
        for earlier, later in zip(times, times[1:]):
            if later >= start_ns and earlier <= end_ns:
                longest = max(longest, later - earlier)
        return longest

    def record(self, phases: List[Tuple[str, int]], reports: List[dict]) -> dict:
        return {"rate_pps": self.rate_pps, "payload_bytes": self.payload_bytes, "count_per_flow": self.count,
                "phases": phases, "started_ns": self.started_ns, "ended_ns": self.ended_ns,
                "flows": [{"stream_id": f"{stream.stream_id:016x}", "analysis": report,
                           "send_errors": stream.send_errors, "sent_ns": stream.sent_times(),
                           "arrivals": [list(a) for a in stream.arrivals()]}
                          for stream, report in zip(self.streams, reports)]}


class Bench:
    """What one live-TAP case owns: a wire, backend processes, streams."""

    def __init__(self, vm_factory, case, run):
        self.factory = vm_factory
        self.case = case
        self.run = run
        self.backends: List[Backend] = []
        self.traffic: List[Traffic] = []
        self.wire = None
        self._sockets = 0
        # False: every backend spawned from here on counts stream datagrams
        # without echoing them (--echo-streams 0), for Traffic(echoed=False).
        self.echo_streams = True

    @property
    def netns(self) -> str:
        return self.wire.netns

    def make_wire(self):
        """The namespace: bridge (learning off on TAP ports), one persistent
        TAP (`wire.taps[0]`, single-queue, vnet_hdr), the peer 198.18.0.1."""
        self.wire = self.factory.wire(1)
        # No IPv6 in the namespace: a TAP's own router solicitations and MLD
        # reports would be frames nobody sent, in the counters the case compares.
        argv = ["ip", "netns", "exec", self.wire.netns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1"]
        status, output = vnetct_native.run_command(argv, 10.0)
        if status.code != 0 or status.signal != 0:
            raise AssertionError(f"{' '.join(argv)}: {status.describe()}: {output.strip()}")
        self._seed_wire_loss(self.wire.taps[0])
        return self.wire

    def _seed_wire_loss(self, tap: str) -> None:
        """The run's seeded bench loss (bench-loss-before-tap), if any, on the
        bridge port of `tap`."""
        fault = self._fault()
        if fault is not None and fault.bench_loss:
            from vnetct.traffic.impair import Direction, Impairment
            # Frames leaving the bridge into the TAP (to the guest's side): no TAP counter sees them.
            Impairment(self.wire).random_loss(tap, fault.bench_loss, Direction.TO_GUEST)

    def own_tap_name(self, suffix: str = "q") -> str:
        """A name for a TAP the source creates (non-persistent) in the wire's namespace."""
        return self.wire.taps[0][:-2] + suffix

    def _fault(self):
        """The run's seeded fault (vnetct.faults.catalog), if any."""
        name = getattr(self.run.sut.options, "fault", None)
        if not name:
            return None
        from vnetct.faults.catalog import fault_named
        return fault_named(name)

    def _seeded_fault(self, role: str) -> List[str]:
        """The `role` (source or target) backend's arguments of a run's seeded fault, if any."""
        fault = self._fault()
        return list(getattr(fault, f"{role}_backend_args")) if fault is not None else []

    def _label(self) -> List[str]:
        # The run's socket root in the command line: the end-of-run sweep finds a survivor by it.
        return ["--label", str(self.run.socket_root), "--echo-streams", str(int(self.echo_streams))]

    def source(self, tap: str, queues: int = 1, multi_queue: bool = False, offloads: int = OFFLOADS,
               vnet_hdr_size: int = 12, sndbuf: int = 0, transfer_parameter: bool = True,
               transfer_device: bool = True) -> Tuple[Backend, str]:
        """The source backend on `tap` (attached if it exists, else created);
        returns it and its state line once it is ready. The transfer switches
        are LT-CFG-01's migration parameter and device option."""
        argv = [str(BACKEND), "source", "--netns", self.netns, "--tap", tap, "--queues", str(queues),
                "--multi-queue", "1" if multi_queue else "0", "--offloads", hex(offloads),
                "--vnet-hdr-size", str(vnet_hdr_size), "--sndbuf", str(sndbuf),
                "--transfer-parameter", str(int(transfer_parameter)), "--transfer-device", str(int(transfer_device)),
                *self._label(), *self._seeded_fault("source")]
        backend = self._spawn("source", argv)
        state = backend.expect("ready ").removeprefix("ready ")
        self.case.step(f"source backend ready: {state}")
        return backend, state

    def target(self, name: str, hold_offer_ms: int = 0, serve_delay_ms: int = 0, extra: Tuple[str, ...] = (),
               user: Optional[int] = None, in_wire_namespace: bool = True,
               listening: bool = True) -> Tuple[Backend, str]:
        """A target backend; returns it and its socket path once it listens
        (`listening` False: at once, for a target expected to refuse).
        `extra`: more arguments; `user`: an unprivileged uid to run as, with
        no capability (its socket then lives in a directory of its own that
        it owns), in the wire's namespace (where the TAP is) unless
        `in_wire_namespace` is False."""
        self.run.socket_root.mkdir(parents=True, exist_ok=True)
        self._sockets += 1
        directory = self.run.socket_root
        if user is not None:
            directory = Path(tempfile.mkdtemp(prefix=f"uid{user}-", dir=self.run.socket_root))
            os.chown(directory, user, user)
            os.chmod(self.run.socket_root, 0o711)  # traversable, not listable
        path = str(directory / f"lt-{os.getpid()}-{self._sockets}.sock")
        argv = [str(BACKEND), "target", "--listen", path, "--hold-offer-ms", str(hold_offer_ms),
                "--serve-delay-ms", str(serve_delay_ms), *extra, *self._label(), *self._seeded_fault("target")]
        if user is not None:
            # util-linux setpriv: that uid and gid, no groups, no capability left in any set.
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", "--inh-caps=-all",
                    "--bounding-set=-all", *argv]
            if in_wire_namespace:
                argv = ["ip", "netns", "exec", self.netns, *argv]
        backend = self._spawn(name, argv)
        if listening:
            line = backend.expect(f"listening {path}")
            self.case.step(f"{name}: {line}")
        return backend, path

    def _spawn(self, name: str, argv: List[str]) -> Backend:
        if not BACKEND.exists():
            raise AssertionError(f"missing {BACKEND}: build the target livetap_backend "
                                 f"(cmake --build build --target livetap_backend)")
        backend = Backend(name, argv, self.case.dir)
        self.backends.append(backend)
        return backend

    def join_wire(self, tap: str) -> int:
        """Puts a TAP the source created on the wire's bridge, as the wire's own
        TAPs are (learning off, flooding on); returns when done (monotonic ns)."""
        bridge = self.wire.bridge
        for argv in (["link", "set", tap, "master", bridge],
                     ["link", "set", "dev", tap, "type", "bridge_slave", "learning", "off", "flood", "on"],
                     ["link", "set", tap, "up"]):
            self._ip(argv)
        self._seed_wire_loss(tap)
        return time.monotonic_ns()

    def _ip(self, argv: List[str]) -> str:
        return ip_in(self.netns, argv)

    def link(self, tap: str) -> Link:
        return read_link(self.netns, tap)

    def features(self, tap: str) -> Dict[str, bool]:
        return read_features(self.netns, tap)

    def wire_sent(self) -> int:
        """Frames the wire's own stacks sent (tx_packets of the peer's veth and
        of the bridge device): besides the backends' echoes, the only frames a
        TAP on the bridge is ever offered (IPv6 is off in the namespace; what
        the peer sends besides the streams is its ARP)."""
        return read_link(self.netns, self.wire.peer_interface).tx_packets + \
            read_link(self.netns, self.wire.bridge).tx_packets

    def commit(self, holder: Backend, path: str) -> Committed:
        """The holder hands its TAP over to the target listening on `path`
        and commits (it reads no more)."""
        return Committed.from_line(holder.ask(f"handoff {path}", "committed ")["line"])

    def serving(self, target: Backend, committed: Committed) -> HandOff:
        """The target's report that it serves the TAP it was handed."""
        return HandOff.from_lines(committed, target.expect("serving "))

    def hand_off(self, holder: Backend, target: Backend, path: str) -> HandOff:
        """One hand-off from `holder` to `target` (listening on `path`)."""
        return self.serving(target, self.commit(holder, path))

    def streams(self, rate_pps: float, payload_bytes: int, seconds: float, flows: int = 1) -> Traffic:
        traffic = Traffic(self.netns, rate_pps, payload_bytes, seconds, flows, echoed=self.echo_streams)
        self.traffic.append(traffic)
        self.case.step(f"{flows} UDP flow(s), {rate_pps:.0f} datagrams/s in all, payload {payload_bytes} B, "
                       f"{traffic.count} per flow, to {GUEST_ADDRESS}"
                       f"{'' if self.echo_streams else ' (not echoed: counted by the readers)'}")
        return traffic

    def close(self) -> List[str]:
        """Stops every stream and backend (pass or fail); the problems found."""
        problems = []
        for traffic in self.traffic:
            try:
                traffic.stop()
            except Exception as error:  # noqa: BLE001 - keep tearing down
                problems.append(f"stream stop: {error}")
        for backend in self.backends:
            lingering = backend.process.poll() is None
            backend.close_input()
            try:
                if lingering:
                    backend.process.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
            try:
                backend.kill()
            except Exception as error:  # noqa: BLE001
                problems.append(f"backend {backend.name} (pid {backend.process.pid}): {error}")
            for handle in (backend.process.stdin, backend.process.stdout):
                try:
                    handle.close()
                except OSError:
                    pass
            if Path(f"/proc/{backend.process.pid}").exists() and backend.process.returncode is None:
                problems.append(f"backend {backend.name} pid {backend.process.pid} still alive")
        if self.backends:
            self.case.save_json("backends.json", {b.name: {"argv": b.argv, "exit": b.process.returncode,
                                                           "transcript": b.transcript} for b in self.backends})
        self.backends, self.traffic = [], []
        return problems
