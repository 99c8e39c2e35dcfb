"""A relay's L0 end: a unix socket on L0 whose one connection is carried,
byte for byte, to a unix socket in the daemon's host (an L2 QEMU's QMP or
guest agent socket in L1). The harness's own clients connect to `path` as
they would to a local QEMU: vnetct_native.QmpClient.connect(relay.path).

The L1 connection is opened first (open_relay, which waits for the socket to
appear); what arrives before the L0 client connects waits in the daemon
(its window) and then here. Two threads per relay: L0 -> channel (send
blocks while the window is full) and channel -> L0 (the bytes are
acknowledged once the L0 socket took them)."""

from __future__ import annotations

import os
import queue
import socket
import threading
from pathlib import Path
from typing import Optional

from vnetct.remote.client import Channel, RemoteAgentClient, RemoteError

_END = object()


class LocalRelay:
    """Relays `l1_path` (in the daemon's host) to a new unix socket `path` on L0."""

    def __init__(self, client: RemoteAgentClient, l1_path: str, path: Path, timeout: float = 10.0):
        self.client, self.l1_path, self.path = client, l1_path, Path(path)
        self.error: Optional[str] = None
        self._to_local: "queue.Queue" = queue.Queue()
        self.channel: Channel = client.open_relay(l1_path, timeout=timeout)
        self.channel.on_close = lambda reason: self._to_local.put(_END)
        self.channel.attach(self._to_local.put)  # with what came before (a QMP greeting)
        if self.path.exists():
            self.path.unlink()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self._listener.bind(str(self.path))
        self._listener.listen(1)
        self._local: Optional[socket.socket] = None
        self._accepted = threading.Event()
        self._threads = [threading.Thread(target=self._accept_and_pump_up, daemon=True, name=f"relay-up {l1_path}"),
                         threading.Thread(target=self._pump_down, daemon=True, name=f"relay-down {l1_path}")]
        for thread in self._threads:
            thread.start()

    def _accept_and_pump_up(self) -> None:
        try:
            self._local, _ = self._listener.accept()
        except OSError:
            self._accepted.set()
            return  # closed before anyone connected
        self._accepted.set()
        try:
            while True:
                data = self._local.recv(self.channel.frame)
                if not data:
                    break
                self.channel.send(data)
        except (OSError, RemoteError) as error:
            self.error = self.error or f"L0 -> {self.l1_path}: {error}"
        self._close_remote()

    def _pump_down(self) -> None:
        self._accepted.wait()
        while True:
            item = self._to_local.get()
            if item is _END or self._local is None:
                break
            try:
                self._local.sendall(item)
            except OSError as error:
                self.error = self.error or f"{self.l1_path} -> L0: {error}"
                break
            self.channel.ack(len(item))
        if self._local is not None:
            try:
                self._local.shutdown(socket.SHUT_RDWR)  # the L1 end closed: so does the L0 end
            except OSError:
                pass

    def _close_remote(self) -> None:
        try:
            self.channel.close()
        except RemoteError:
            pass  # the stream is gone: so is the relay
        self._to_local.put(_END)

    def close(self) -> None:
        """Closes both ends and removes the L0 socket."""
        self._close_remote()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes an accept() still waiting
        except OSError:
            pass
        self._listener.close()
        if self._local is not None:
            try:
                self._local.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._accepted.set()
        for thread in self._threads:
            thread.join(timeout=10)
        if self._local is not None:
            self._local.close()
        if self.path.exists():
            os.unlink(self.path)

    def __enter__(self) -> "LocalRelay":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
