"""The wire seen from the host: every frame on a VM's TAPs, with the host's
CLOCK_MONOTONIC arrival time, the TAP (port) and the direction, captured
inside the run's network namespace.

One AF_PACKET socket per TAP is opened inside the namespace
(vnetct_native.open_socket_in_netns; the harness's own threads stay where
they are) and bound to its TAP; Scapy's AsyncSniffer reads them all. The
kernel stamps each frame (SO_TIMESTAMPNS, CLOCK_REALTIME); the stamp is
moved onto CLOCK_MONOTONIC, the clock of every other host_ns in the harness,
by the offset between the two clocks read at start. Direction comes from the
packet type: a frame the guest transmits is written by QEMU into its TAP and
arrives on the host side of it (FROM_GUEST); a frame the bridge forwards to
the guest leaves the host by the TAP (PACKET_OUTGOING, TO_GUEST).

Bounded and untrusted: at most `max_frames` frames are kept, each cut to
SNAPLEN bytes (headers only), and decode() reads them with length checks,
never trusting a length field. Scapy dissects the announce frames (ARP and
RARP); the echo stream's datagrams, thousands in a case, are read by offset.

A TAP that is down (a migration target's, until its ports are connected)
delivers nothing and makes its socket report ENETDOWN once: the sniffer
counts it and goes on; frames flow once the link is up."""

from __future__ import annotations

import errno
import socket
import struct
import threading
import time
import functools
from dataclasses import dataclass
from typing import Dict, Iterable, List, Sequence, Tuple

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_RARP = 0x8035
ETH_P_8021Q = 0x8100
ARP_OP_REQUEST, ARP_OP_REPLY, RARP_OP_REQUEST = 1, 2, 3
PACKET_OUTGOING = 4          # linux/if_packet.h: sll_pkttype of a frame the host sends
SOL_PACKET = 263
PACKET_AUXDATA = 8           # per frame: its length on the wire (tp_len)
PACKET_STATISTICS = 6        # per socket: frames seen and dropped by the kernel
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)

FROM_GUEST = "from-guest"
TO_GUEST = "to-guest"

# Ethernet + IPv4 + UDP headers + the stream's header (magic, stream id, seq): 58 bytes.
SNAPLEN = 96
DEFAULT_MAX_FRAMES = 50_000
RECEIVE_BUFFER_BYTES = 1 << 20  # about 4 s of a 200 pps stream both ways, should the reader stall
_ANCILLARY_BYTES = socket.CMSG_SPACE(16) + socket.CMSG_SPACE(20)

# The echo stream's wire format (host_agent/udp_stream.hpp): magic u32 | stream id u64 | seq u32 | sent_ns i64.
STREAM_MAGIC = 0x564E4354


@dataclass(frozen=True)
class Frame:
    """One captured frame: arrival on the host (CLOCK_MONOTONIC ns), its TAP,
    direction, length on the wire and its first SNAPLEN bytes."""
    t_ns: int
    port: str
    direction: str
    length: int
    head: bytes

    def to_json(self) -> dict:
        return {"t_ns": self.t_ns, "port": self.port, "direction": self.direction, "length": self.length,
                **decode(self.head)}


def _mac(data: bytes) -> str:
    return ":".join(f"{byte:02x}" for byte in data)


def decode(head: bytes) -> dict:
    """The headers of one frame, read defensively: always a dict with `kind`
    (rarp, arp, udp, ipv4, other, truncated) and what could be read."""
    if len(head) < 14:
        return {"kind": "truncated"}
    fields = {"dst": _mac(head[0:6]), "src": _mac(head[6:12])}
    ethertype = struct.unpack_from("!H", head, 12)[0]
    offset = 14
    if ethertype == ETH_P_8021Q and len(head) >= 18:
        ethertype = struct.unpack_from("!H", head, 16)[0]
        offset = 18
    fields["ethertype"] = ethertype
    if ethertype in (ETH_P_ARP, ETH_P_RARP):
        return {**fields, **_decode_arp(head[offset:offset + 28], ethertype)}
    if ethertype == ETH_P_IP:
        return {**fields, **_decode_ipv4(head, offset)}
    return {**fields, "kind": "other"}


def _decode_arp(body: bytes, ethertype: int) -> dict:
    kind = "rarp" if ethertype == ETH_P_RARP else "arp"
    if len(body) < 28:
        return {"kind": "truncated", "of": kind}
    from scapy.layers.l2 import ARP  # imported on use: Scapy takes most of a second to load

    try:
        arp = ARP(body)  # Scapy's ARP layer also reads RARP's body (same layout, opcode 3/4)
        return {"kind": kind, "op": int(arp.op), "hwsrc": str(arp.hwsrc), "psrc": str(arp.psrc),
                "hwdst": str(arp.hwdst), "pdst": str(arp.pdst), "hwlen": int(arp.hwlen), "plen": int(arp.plen)}
    except Exception as error:  # noqa: BLE001 - an untrusted frame Scapy could not read
        return {"kind": "truncated", "of": kind, "error": type(error).__name__}


def _decode_ipv4(head: bytes, offset: int) -> dict:
    if len(head) < offset + 20:
        return {"kind": "truncated", "of": "ipv4"}
    version_ihl, = struct.unpack_from("!B", head, offset)
    header_bytes = (version_ihl & 0x0F) * 4
    if version_ihl >> 4 != 4 or header_bytes < 20:
        return {"kind": "other", "of": "ipv4"}
    protocol = head[offset + 9]
    fields = {"ip_src": socket.inet_ntoa(head[offset + 12:offset + 16]),
              "ip_dst": socket.inet_ntoa(head[offset + 16:offset + 20])}
    udp = offset + header_bytes
    if protocol != 17:
        return {**fields, "kind": "ipv4"}
    if len(head) < udp + 8:
        return {**fields, "kind": "truncated", "of": "udp"}
    sport, dport = struct.unpack_from("!HH", head, udp)
    fields.update(kind="udp", sport=sport, dport=dport)
    payload = udp + 8
    if len(head) >= payload + 16 and struct.unpack_from("!I", head, payload)[0] == STREAM_MAGIC:
        fields["stream_seq"] = struct.unpack_from("!I", head, payload + 12)[0]
    return fields


# --- capture ---------------------------------------------------------------------

def _clock_offset_ns() -> int:
    """CLOCK_REALTIME minus CLOCK_MONOTONIC, from the tightest of a few reads."""
    best = None
    for _ in range(5):
        before = time.monotonic_ns()
        real = time.clock_gettime_ns(time.CLOCK_REALTIME)
        after = time.monotonic_ns()
        if best is None or after - before < best[0]:
            best = (after - before, real - (before + after) // 2)
    return best[1]


@functools.lru_cache(maxsize=None)
def tap_socket_class():
    """TapSocket, a Scapy SuperSocket: built on first use, so that importing
    this module does not load Scapy (collection of every case imports it)."""
    from scapy.config import conf
    from scapy.supersocket import SuperSocket

    class TapSocket(SuperSocket):
        """A read-only AF_PACKET socket on one TAP of a namespace, for Scapy's
        sniffer. recv() gives Scapy's raw layer with the capture facts attached
        (`frame`), or None for a link-down notice or a frame past the limit."""

        def __init__(self, netns: str, tap: str, clock_offset_ns: int, snaplen: int = SNAPLEN):
            from vnetct.core.native import vnetct_native

            fd = vnetct_native.open_socket_in_netns(netns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            self.ins = socket.socket(fileno=fd)
            self.outs = None  # capture only: nothing is sent from here
            self.iface = tap
            self.promisc = False
            self.tap = tap
            self.snaplen = snaplen
            self.clock_offset_ns = clock_offset_ns
            self.link_down_notices = 0
            try:
                self.ins.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
                self.ins.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                self.ins.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
                self.ins.bind((tap, ETH_P_ALL))  # the name is looked up in the socket's namespace
            except OSError:
                self.ins.close()
                raise

        def recv_raw(self, x: int = SNAPLEN):
            raise NotImplementedError("TapSocket.recv gives frames with their capture facts")

        def recv(self, x: int = SNAPLEN):
            try:
                data, ancillary, _flags, address = self.ins.recvmsg(self.snaplen, _ANCILLARY_BYTES)
            except OSError as error:
                if error.errno in (errno.ENETDOWN, errno.ENXIO):
                    self.link_down_notices += 1  # reported once per link-down; the socket stays bound
                    return None
                raise
            real_ns = None
            length = len(data)
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
                    seconds, nanoseconds = struct.unpack_from("qq", payload)
                    real_ns = seconds * 1_000_000_000 + nanoseconds
                elif level == SOL_PACKET and kind == PACKET_AUXDATA and len(payload) >= 8:
                    length = struct.unpack_from("II", payload)[1]  # tp_len
            t_ns = real_ns - self.clock_offset_ns if real_ns is not None else time.monotonic_ns()
            direction = TO_GUEST if address[2] == PACKET_OUTGOING else FROM_GUEST
            packet = conf.raw_layer(data)
            packet.frame = Frame(t_ns, self.tap, direction, length, bytes(data))
            return packet

        def kernel_statistics(self) -> Dict[str, int]:
            """Frames the kernel passed to this socket and dropped for want of room
            since the last call (PACKET_STATISTICS)."""
            raw = self.ins.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
            packets, drops = struct.unpack("II", raw)
            return {"packets": packets, "drops": drops}

    return TapSocket


class WireCapture:
    """Frames on the TAPs `ports` of namespace `netns` from start() to stop().
    Keeps at most `max_frames` (then counts what it did not keep)."""

    def __init__(self, netns: str, ports: Sequence[str], max_frames: int = DEFAULT_MAX_FRAMES,
                 snaplen: int = SNAPLEN):
        self.netns = netns
        self.ports = list(ports)
        self.max_frames = max_frames
        self.snaplen = snaplen
        self._frames: List[Frame] = []
        self._changed = threading.Condition()
        self.not_kept = 0
        self.sockets: List = []  # tap_socket_class() instances
        self.sniffer = None
        self.statistics: Dict[str, dict] = {}
        self.started_ns = 0
        self.stopped_ns = 0

    def start(self) -> "WireCapture":
        from scapy.sendrecv import AsyncSniffer

        tap_socket = tap_socket_class()
        offset = _clock_offset_ns()
        try:
            for port in self.ports:
                self.sockets.append(tap_socket(self.netns, port, offset, self.snaplen))
        except OSError:
            self._close_sockets()
            raise
        self.started_ns = time.monotonic_ns()  # frames from here on queue in the bound sockets
        self.sniffer = AsyncSniffer(opened_socket={s: s.tap for s in self.sockets}, prn=self._keep, store=False)
        self.sniffer.start()
        return self

    def _keep(self, packet) -> None:
        frame = getattr(packet, "frame", None)
        if frame is None:
            return
        with self._changed:
            if len(self._frames) < self.max_frames:
                self._frames.append(frame)
            else:
                self.not_kept += 1
            self._changed.notify_all()

    def frames(self) -> List[Frame]:
        with self._changed:
            return list(self._frames)

    def wait_for(self, condition, timeout: float, what: str) -> List[Frame]:
        """The frames once `condition(frames)` holds; bounded by `timeout`.
        Raises TimeoutError saying what was awaited and what arrived."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition(self._frames):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{what}: not seen within {timeout:.1f} s on {', '.join(self.ports)} "
                                       f"({len(self._frames)} frames captured)")
                self._changed.wait(remaining)
            return list(self._frames)

    def stop(self) -> List[Frame]:
        """Stops the sniffer, reads what is still queued in the sockets, closes them."""
        if self.sniffer is not None:
            if self.sniffer.running:
                self.sniffer.stop(join=True)
            self.sniffer = None
            self.stopped_ns = time.monotonic_ns()
            for sock in self.sockets:
                self._drain(sock)
        self._close_sockets()
        return self.frames()

    def _drain(self, sock) -> None:
        sock.ins.setblocking(False)
        while True:  # bounded by what the socket holds (its receive buffer)
            try:
                packet = sock.recv()
            except BlockingIOError:
                return
            if packet is not None:
                self._keep(packet)

    def _close_sockets(self) -> None:
        for sock in self.sockets:
            try:
                self.statistics[sock.tap] = {**sock.kernel_statistics(),
                                             "link_down_notices": sock.link_down_notices}
            except OSError:
                pass
            sock.close()
        self.sockets = []

    def summary(self) -> dict:
        frames = self.frames()
        per_port = {port: {FROM_GUEST: 0, TO_GUEST: 0} for port in self.ports}
        for frame in frames:
            per_port[frame.port][frame.direction] += 1
        return {"netns": self.netns, "ports": self.ports, "started_ns": self.started_ns,
                "stopped_ns": self.stopped_ns, "frames": len(frames), "not_kept": self.not_kept,
                "max_frames": self.max_frames, "snaplen": self.snaplen, "per_port": per_port,
                "kernel": self.statistics}

    def save(self, case, name: str, keep=lambda frame: True) -> None:
        """The capture's summary and the frames `keep` selects, decoded, as a case artifact."""
        case.save_json(name, {**self.summary(), "frames": [f.to_json() for f in self.frames() if keep(f)]})

    def __enter__(self) -> "WireCapture":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --- attribution ---------------------------------------------------------------------

def port_roles(vm) -> Dict[str, str]:
    """{TAP: the id (or driver) of the NIC behind it} for a VM on a wire."""
    nics = [nic for nic in vm.spec.nics if nic.tap]
    return {tap: nic.id or nic.driver for tap, nic in zip(vm.taps, nics)}


def stream_echoes(frames: Iterable[Frame], guest_address: str, echo_port: int) -> List[Tuple[int, str, int]]:
    """(t_ns, port, seq) of each echo of the stream the guest sent: UDP from
    `guest_address`:`echo_port` carrying the stream's header, from the guest."""
    echoes = []
    for frame in frames:
        if frame.direction != FROM_GUEST:
            continue
        fields = decode(frame.head)
        if fields.get("kind") == "udp" and fields.get("sport") == echo_port and \
                fields.get("ip_src") == guest_address and "stream_seq" in fields:
            echoes.append((frame.t_ns, frame.port, fields["stream_seq"]))
    return echoes


def echoes_by_port(echoes: Iterable[Tuple[int, str, int]], windows: Sequence[Tuple[str, int, int]],
                   ports: Sequence[str]) -> Dict[str, Dict[str, int]]:
    """{window name: {port: distinct sequence numbers that left the guest by
    that port within [start_ns, end_ns)}}."""
    result = {name: {port: set() for port in ports} for name, _, _ in windows}
    for t_ns, port, seq in echoes:
        for name, start_ns, end_ns in windows:
            if start_ns <= t_ns < end_ns:
                result[name].setdefault(port, set()).add(seq)
    return {name: {port: len(seqs) for port, seqs in by_port.items()} for name, by_port in result.items()}


def echo_port_problems(by_port: Dict[str, int], expected_port: str, came_back: int, roles: Dict[str, str],
                       rules: str) -> List[str]:
    """What is wrong with a window's attribution (echoes_by_port) when every
    echo should have left the guest by `expected_port`: echoes by any other
    port, or fewer by it than came back to the peer. Each problem starts with
    `rules` (the rule ids the caller judges)."""
    named = {roles.get(port, port): count for port, count in by_port.items()}
    problems = []
    strays = {port: count for port, count in by_port.items() if port != expected_port and count}
    if strays:
        problems.append(f"{rules}: echoes left the guest by {', '.join(f'{roles.get(p, p)} ({p}): {c}' for p, c in strays.items())} "
                        f"instead of {roles.get(expected_port, expected_port)} ({expected_port}); per port: {named}")
    if by_port.get(expected_port, 0) < came_back:
        problems.append(f"{rules}: {came_back} echoes came back to the peer but only {by_port.get(expected_port, 0)} "
                        f"left the guest by {roles.get(expected_port, expected_port)} ({expected_port}); per port: {named}")
    return problems
