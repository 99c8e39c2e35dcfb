"""A client of the host agent daemon over one connected stream socket.

One reader thread takes every line off the stream as it arrives and hands it
on: a reply to the request waiting for it, an event to the event list, a
channel's data or acknowledgement to its channel. Every call waits with a
deadline and raises RemoteTimeout naming the request and the time; an error
reply raises RemoteError with the daemon's code and message. Untrusted input:
a line longer than the limit, or one that is not a JSON object, ends the
client with RemoteClosed naming it (the daemon never sends such lines)."""

from __future__ import annotations

import base64
import errno
import itertools
import json
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

MAX_LINE_BYTES = 8 << 20          # the daemon's replies are at most a read_file chunk (2 MiB) in base64
FILE_CHUNK = 1 << 20              # write_file / read_file bytes per request (the daemon allows 2 MiB)


class RemoteError(Exception):
    """The daemon answered a request with an error: `code` is its error code's name."""

    def __init__(self, request: str, code: str, message: str):
        super().__init__(f"{request}: {code}: {message}")
        self.request, self.code, self.message = request, code, message


class RemoteTimeout(RemoteError):
    """No answer within the deadline."""

    def __init__(self, request: str, message: str):
        super().__init__(request, "Timeout", message)


class RemoteClosed(RemoteError):
    """The stream ended (or broke) while waiting."""

    def __init__(self, request: str, message: str):
        super().__init__(request, "Closed", message)


class Channel:
    """One channel of the stream on L0's side: data from the daemon is handed
    to `on_data` (which returns once the bytes are delivered; the channel then
    acknowledges them) or, without one, kept for recv(); send() never has
    more than the daemon's window unacknowledged."""

    def __init__(self, client: "RemoteAgentClient", ch: int, what: str, ack_on_arrival: bool):
        self.client, self.ch, self.what = client, ch, what
        # a process's output is acknowledged as it arrives (kept here); a relay's only once
        # delivered (recv(), or its consumer: attach()), so that a slow consumer holds the daemon back
        self.ack_on_arrival = ack_on_arrival
        self.window = client.window_bytes
        self.frame = client.frame_bytes
        self._cond = threading.Condition()
        self._unacked = 0
        self._received = bytearray()
        self.closed_reason: Optional[str] = None
        self.on_data: Optional[Callable[[bytes], None]] = None
        self.on_close: Optional[Callable[[str], None]] = None

    # -- called by the reader thread ---------------------------------------
    def _data(self, data: bytes) -> None:
        with self._cond:
            if self.on_data is not None:
                self.on_data(data)  # acknowledged by whoever delivers it (ack())
                return
            self._received += data
            self._cond.notify_all()
        if self.ack_on_arrival:
            self.ack(len(data))

    def attach(self, on_data: Callable[[bytes], None]) -> None:
        """From now on `on_data` gets the data, first what arrived before (in order); it must not block, and
        whoever delivers the bytes acknowledges them (ack())."""
        with self._cond:
            if self._received:
                on_data(bytes(self._received))
                self._received.clear()
            self.on_data = on_data

    def _ack(self, count: int) -> None:
        with self._cond:
            self._unacked = max(0, self._unacked - count)
            self._cond.notify_all()

    def _closed(self, reason: str) -> None:
        with self._cond:
            self.closed_reason = reason
            self._cond.notify_all()
        if self.on_close is not None:
            self.on_close(reason)

    # -- the caller's side ---------------------------------------------------
    def ack(self, count: int) -> None:
        """`count` bytes of the daemon's data were delivered: it may send that many more."""
        if count and self.closed_reason is None:
            self.client._send({"ch": self.ch, "ack": count})

    def send(self, data: bytes, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        view = memoryview(data)
        while view:
            with self._cond:
                while self._unacked >= self.window and self.closed_reason is None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise RemoteTimeout(f"send on {self.what}", f"the window ({self.window} bytes) stayed full "
                                                                    f"for {timeout:.1f} s")
                    self._cond.wait(left)
                if self.closed_reason is not None:
                    raise RemoteClosed(f"send on {self.what}", self.closed_reason)
                size = min(len(view), self.frame, self.window - self._unacked)
                self._unacked += size
            self.client._send({"ch": self.ch, "data": base64.b64encode(view[:size]).decode()})
            view = view[size:]

    def recv(self, count: int, timeout: float = 30.0) -> bytes:
        """Exactly `count` bytes of what the daemon sent (without on_data)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._received) < count:
                if self.closed_reason is not None:
                    raise RemoteClosed(f"recv on {self.what}", f"{self.closed_reason} after {len(self._received)} "
                                                               f"of {count} bytes")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RemoteTimeout(f"recv on {self.what}", f"{len(self._received)} of {count} bytes within "
                                                                f"{timeout:.1f} s")
                self._cond.wait(left)
            data = bytes(self._received[:count])
            del self._received[:count]
        if not self.ack_on_arrival:
            self.ack(len(data))
        return data

    def read_all(self, timeout: float = 30.0) -> bytes:
        """Everything until the daemon closes the channel (a process's streamed output)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.closed_reason is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RemoteTimeout(f"read_all on {self.what}", f"not closed within {timeout:.1f} s "
                                                                    f"({len(self._received)} bytes so far)")
                self._cond.wait(left)
            data = bytes(self._received)
            self._received.clear()
        if not self.ack_on_arrival:
            self.ack(len(data))
        return data

    def close(self, timeout: float = 10.0) -> dict:
        if self.closed_reason is not None:
            return {"ch": self.ch, "already_closed": self.closed_reason}
        reply = self.client.request("close_relay", {"ch": self.ch}, timeout=timeout)
        self._closed("closed by the harness")
        return reply


class RemoteAgentClient:
    """The daemon at the other end of `sock` (connected, blocking)."""

    def __init__(self, sock: socket.socket, name: str = "the host agent", transcript: Optional[Path] = None):
        self.sock, self.name = sock, name
        self._ids = itertools.count(1)
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._replies: Dict[int, dict] = {}
        self._events: List[dict] = []
        self._channels: Dict[int, Channel] = {}        # open
        self._channels_made: Dict[int, Channel] = {}   # every channel, by id, for the caller to pick up
        self._ops: Dict[int, str] = {}                 # request id -> op, until its reply
        self._closed: Optional[str] = None
        self._transcript = open(transcript, "a") if transcript else None
        self.window_bytes = 256 << 10
        self.frame_bytes = 48 << 10
        self._reader = threading.Thread(target=self._read_loop, name="remote-agent-reader", daemon=True)
        self._reader.start()

    @classmethod
    def connect(cls, path: Union[str, Path], timeout: float = 30.0, **kwargs) -> "RemoteAgentClient":
        """Connects to the unix socket (QEMU's chardev for L1's port), retrying while it is not there yet."""
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            try:
                sock.connect(str(path))
                return cls(sock, **kwargs)
            except OSError as error:
                sock.close()
                if error.errno not in (errno.ENOENT, errno.ECONNREFUSED) or time.monotonic() >= deadline:
                    raise RemoteClosed("connect", f"{path}: {error.strerror} (tried for {timeout:.1f} s)") from None
            time.sleep(0.05)  # retry interval: QEMU makes the socket a moment after it starts

    # -- the stream ------------------------------------------------------------
    def _note(self, direction: str, message: dict) -> None:
        if self._transcript is not None and "data" not in message and "ack" not in message:
            self._transcript.write(json.dumps({"t": round(time.monotonic(), 6), "dir": direction,
                                               "msg": message}) + "\n")
            self._transcript.flush()

    def _send(self, message: dict) -> None:
        line = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        with self._send_lock:
            if self._closed is not None:
                raise RemoteClosed(str(message.get("op", "send")), self._closed)
            try:
                self.sock.sendall(line)
            except OSError as error:
                raise RemoteClosed(str(message.get("op", "send")), f"{self.name}: {error}") from None
            self._note("out", message)

    def _read_loop(self) -> None:
        pending = b""
        reason = f"{self.name} closed the stream"
        try:
            while True:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    break
                pending += chunk
                if b"\n" not in chunk:
                    if len(pending) > MAX_LINE_BYTES:
                        reason = f"{self.name} sent more than {MAX_LINE_BYTES} bytes without a line end"
                        break
                    continue
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        self._dispatch(line)
        except (OSError, ValueError) as error:
            reason = f"{self.name}: {error}"
        with self._cond:
            self._closed = reason
            self._cond.notify_all()
        for channel in list(self._channels.values()):
            channel._closed(reason)

    def _dispatch(self, line: bytes) -> None:
        message = json.loads(line)
        if not isinstance(message, dict):
            raise ValueError(f"a line that is no JSON object: {line[:200]!r}")
        if "ch" in message and "event" not in message and "ok" not in message:
            channel = self._channels.get(message["ch"])
            if channel is None:
                return  # closed here a moment ago
            if "ack" in message:
                channel._ack(int(message["ack"]))
            else:
                channel._data(base64.b64decode(message["data"], validate=True))
            return
        self._note("in", message)
        if "ok" in message and isinstance(message.get("id"), int) and message["id"] > 0:
            op = self._ops.pop(message["id"], None)
            if message.get("ok") and op == "open_relay":
                self._open_channel(message["ch"], f"relay to {message.get('path')}", ack_on_arrival=False)
            if message.get("ok") and op == "spawn":
                for key in ("stdout", "stderr"):
                    if f"{key}_ch" in message:
                        self._open_channel(message[f"{key}_ch"], f"process {message.get('process')} {key}",
                                           ack_on_arrival=True)
            with self._cond:
                self._replies[message["id"]] = message
                self._cond.notify_all()
            return
        if message.get("event") == "closed" and message.get("ch") in self._channels:
            self._channels.pop(message["ch"])._closed(str(message.get("reason")))
        with self._cond:
            self._events.append(message)
            self._cond.notify_all()

    def _open_channel(self, ch: int, what: str, ack_on_arrival: bool) -> None:
        channel = Channel(self, ch, what, ack_on_arrival)
        self._channels[ch] = self._channels_made[ch] = channel

    # -- requests ---------------------------------------------------------------
    def request(self, op: str, params: Optional[dict] = None, timeout: float = 30.0) -> dict:
        """Sends a request and returns its reply; RemoteError for an error reply, RemoteTimeout after `timeout`."""
        request_id = next(self._ids)
        started = time.monotonic()
        self._ops[request_id] = op
        self._send({"id": request_id, "op": op, **(params or {})})
        with self._cond:
            while request_id not in self._replies:
                left = started + timeout - time.monotonic()
                if self._closed is not None:
                    raise RemoteClosed(op, f"{self._closed} before the reply to request {request_id}")
                if left <= 0:
                    raise RemoteTimeout(op, f"no reply to request {request_id} within {timeout:.1f} s")
                self._cond.wait(left)
            reply = self._replies.pop(request_id)
        if not reply.get("ok"):
            error = reply.get("error") or {}
            raise RemoteError(op, str(error.get("code")), str(error.get("message")))
        return reply

    @property
    def events(self) -> List[dict]:
        with self._cond:
            return list(self._events)

    def wait_event(self, name: str, match: Optional[dict] = None, timeout: float = 30.0, from_index: int = 0) -> dict:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self._events[from_index:]:
                    if event.get("event") == name and all(event.get(k) == v for k, v in (match or {}).items()):
                        return event
                left = deadline - time.monotonic()
                if self._closed is not None or left <= 0:
                    seen = ", ".join(str(e.get("event")) for e in self._events[from_index:]) or "none"
                    why = self._closed or f"not within {timeout:.1f} s"
                    error = RemoteClosed if self._closed else RemoteTimeout
                    raise error(f"wait_event {name}", f"{why}; events seen: {seen}")
                self._cond.wait(left)

    def hello(self, timeout: float = 10.0) -> dict:
        reply = self.request("hello", timeout=timeout)
        self.window_bytes = int(reply["limits"]["window_bytes"])
        self.frame_bytes = int(reply["limits"]["max_frame_bytes"])
        return reply

    def spawn(self, argv: List[str], env: Optional[Dict[str, str]] = None, stdout: Optional[str] = None,
              stderr: Optional[str] = None, timeout: float = 10.0) -> dict:
        """Starts a process in the daemon's host. stdout/stderr: None (/dev/null), a path there (appended), or
        "stream": the reply's "stdout"/"stderr" is then a Channel with the output."""
        params: dict = {"argv": list(argv)}
        if env:
            params["env"] = dict(env)
        for key, target in (("stdout", stdout), ("stderr", stderr)):
            if target == "stream":
                params[key] = {"stream": True}
            elif target is not None:
                params[key] = {"file": str(target)}
        reply = self.request("spawn", params, timeout=timeout)
        for key in ("stdout", "stderr"):
            if f"{key}_ch" in reply:
                reply[key] = self._channels_made[reply[f"{key}_ch"]]
        return reply

    def signal(self, process: int, signal: Union[str, int] = "TERM", timeout: float = 10.0) -> dict:
        return self.request("signal", {"process": process, "signal": signal}, timeout=timeout)

    def wait(self, process: int, timeout: float = 30.0) -> dict:
        """How the process ended; RemoteError Timeout (from the daemon) if it runs past `timeout`."""
        return self.request("wait", {"process": process, "timeout_s": timeout}, timeout=timeout + 10.0)

    def write_file(self, path: str, data: bytes, mode: int = 0o644, timeout: float = 30.0) -> int:
        """Writes `data` to `path` in the daemon's host (in pieces of FILE_CHUNK)."""
        written = 0
        for start in range(0, max(len(data), 1), FILE_CHUNK):
            piece = data[start:start + FILE_CHUNK]
            reply = self.request("write_file", {"path": path, "data": base64.b64encode(piece).decode(), "mode": mode,
                                                "append": start > 0}, timeout=timeout)
            written += int(reply["bytes"])
        return written

    def read_file(self, path: str, limit: int = 64 << 20, timeout: float = 30.0) -> bytes:
        """The whole file at `path` in the daemon's host (in pieces); RemoteError past `limit` bytes."""
        data = bytearray()
        while True:
            reply = self.request("read_file", {"path": path, "offset": len(data), "length": FILE_CHUNK},
                                 timeout=timeout)
            data += base64.b64decode(reply["data"], validate=True)
            if reply["eof"]:
                return bytes(data)
            if len(data) > limit:
                raise RemoteError("read_file", "Oversized", f"{path}: more than {limit} bytes")

    def open_relay(self, path: str, timeout: float = 10.0) -> Channel:
        """A channel to the unix socket `path` in the daemon's host (waited for up to `timeout`)."""
        reply = self.request("open_relay", {"path": path, "timeout_s": timeout}, timeout=timeout + 10.0)
        return self._channels_made[reply["ch"]]

    def sriov_probe(self, pf: str, timeout: float = 30.0) -> dict:
        return self.request("sriov_probe", {"pf": pf}, timeout=timeout)

    def sriov_prepare(self, request: dict, journal: str, timeout: float = 120.0) -> List[dict]:
        return self.request("sriov_prepare", {"request": request, "journal": journal}, timeout=timeout)["vfs"]

    def sriov_restore(self, journal: str, timeout: float = 120.0) -> dict:
        return self.request("sriov_restore", {"journal": journal}, timeout=timeout)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._reader.join(timeout=10)
        self.sock.close()
        if self._transcript is not None:
            self._transcript.close()
