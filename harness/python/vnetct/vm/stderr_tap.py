"""QEMU's stderr with arrival times: QEMU writes into a FIFO, a thread reads
it, stamps each line with CLOCK_MONOTONIC on arrival, and appends it to the
VM's stderr file. The trace then judges each line in order with the events
(a warning must come when the rule says, not 'somewhere before the end')."""

from __future__ import annotations

import os
import select
import threading
import time
from pathlib import Path
from typing import List, Tuple

MAX_LINE = 64 * 1024  # QEMU's output is untrusted: a longer line is cut


class StderrTap:
    def __init__(self, fifo: Path, log: Path):
        self.fifo = fifo
        self.log = log
        self.lines: List[Tuple[int, str]] = []
        self._closed = False
        fifo.unlink(missing_ok=True)
        os.mkfifo(fifo, 0o600)
        self._read = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        # Our own writer keeps the FIFO from reading EOF before QEMU opened it.
        self._keep = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self._stop_r, self._stop_w = os.pipe()
        self._lock = threading.Lock()
        self._partial = b""
        self._thread = threading.Thread(target=self._run, name=f"stderr-{log.name}", daemon=True)
        self._thread.start()

    def _take(self) -> bool:
        """Reads what is there; False at EOF."""
        with self._lock:
            try:
                data = os.read(self._read, 65536)
            except BlockingIOError:
                return True
            if not data:
                return False
            now = time.monotonic_ns()
            *complete, self._partial = (self._partial + data).split(b"\n")
            if len(self._partial) > MAX_LINE:
                complete.append(self._partial[:MAX_LINE])
                self._partial = b""
            with open(self.log, "ab") as log:
                for raw in complete:
                    log.write(raw + b"\n")
                    self.lines.append((now, raw[:MAX_LINE].decode(errors="replace")))
            return True

    def _run(self) -> None:
        while True:
            ready, _, _ = select.select([self._read, self._stop_r], [], [])
            if self._stop_r in ready or not self._take():
                return

    def flush(self) -> None:
        """Takes in what QEMU wrote so far (before the trace is built); after
        close() everything has been taken in already."""
        while not self._closed:
            before = len(self.lines)
            self._take()
            if len(self.lines) == before:
                return

    def restamp(self, t_ns: int) -> None:
        """The lines so far count as arrived at `t_ns` (a restored VM's trace starts after them)."""
        self.flush()
        with self._lock:
            self.lines[:] = [(t_ns, line) for _, line in self.lines]

    def close(self) -> None:
        self.flush()
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=5.0)
        with self._lock:
            if self._partial:
                with open(self.log, "ab") as log:
                    log.write(self._partial + b"\n")
                self.lines.append((time.monotonic_ns(), self._partial.decode(errors="replace")))
                self._partial = b""
        for fd in (self._read, self._keep, self._stop_r, self._stop_w):
            os.close(fd)
        self._closed = True
        self.fifo.unlink(missing_ok=True)
