"""The run's CPU-quiet slot: a case marked @pytest.mark.cpu_quiet(reason)
runs while no other case of the run does, in any lane or worker (the 100k pps
live-TAP hand-offs: a bench at that rate on two cores loses frames to TCG
guests running beside it, not to the hand-off). Every other case holds the
slot shared while it runs.

Two flock(2) files make a readers-writer lock with the writer first: a quiet
case takes the gate and keeps it while it waits for the running cases to end
(an exclusive lock on the slot), so no other case starts meanwhile; any other
case passes the gate (waiting there while a quiet case does) and then holds
the slot shared. Locks belong to open files: a crashed holder releases them."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import IO, Optional

ENVIRONMENT = "VNETCT_QUIET_SLOT"  # the lock file all case runners of one run share


class QuietSlot:
    def __init__(self, path: Path):
        self.path = path
        self.gate_path = path.with_name(path.name + ".gate")
        self._slot: Optional[IO] = None
        self.quiet = False

    def enter(self, quiet: bool) -> float:
        """Holds the slot (exclusively for a quiet case); returns the seconds waited."""
        if self._slot is not None:
            if quiet and self.quiet:
                return 0.0  # consecutive quiet cases keep the slot
            self.leave()
        started = time.monotonic()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        gate = open(self.gate_path, "a")
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            slot = open(self.path, "a")
            # A quiet case waits here holding the gate: no case starts meanwhile.
            fcntl.flock(slot, fcntl.LOCK_EX if quiet else fcntl.LOCK_SH)
        finally:
            gate.close()
        self._slot, self.quiet = slot, quiet
        return time.monotonic() - started

    def leave(self) -> None:
        if self._slot is not None:
            self._slot.close()
        self._slot = None
        self.quiet = False


def slot_for(run_dir: Path) -> QuietSlot:
    """The slot of the run: the CLI's (shared by its lanes) or this run directory's."""
    return QuietSlot(Path(os.environ.get(ENVIRONMENT) or run_dir / "cpu-quiet.lock"))
