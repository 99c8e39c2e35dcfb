"""L2's snapshot on L0: saved once by a saving L1 (L2 booted without its
primary, `migrate` to a file in L1, the file copied out over a
virtio-serial port into a file on L0), kept in the guest snapshots' cache
mechanism (vnetct.vm.snapshot.SnapshotCache: least recently used evicted
beyond a bound, the meta written last) under its own root, and restored
by every later L1.

The key is a digest of everything that makes the state: L2's kernel and
initramfs, both of L2's command lines (the saver's, which made it, and the
restored one's, which must load it: its devices, memory, MAC), the QEMU
binary (the same one runs in L1) and the format. A change of any of them is
another key, never a wrong restore. An entry is found only if its state
has the size and sha256 its meta records (written after L1's own count of
both was matched against what arrived on L0): a partial or corrupt state
is never restored."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from vnetct.core import paths
from vnetct.vm.snapshot import Snapshot, SnapshotCache, SnapshotError

FORMAT = 1  # bump when what the snapshot holds changes meaning
CACHE_ROOT = paths.CACHE / "nested-l2"
CACHE_LIMIT_BYTES = int(os.environ.get("VNETCT_NESTED_SNAPSHOT_CACHE_MB", "1024")) * 1024 * 1024


@dataclass(frozen=True)
class Inputs:
    """What makes L2's state, as digests and command lines."""
    kernel_sha256: str
    initramfs_sha256: str
    saver_argv: List[str]
    restored_argv: List[str]
    qemu_sha256: str

    def key(self) -> str:
        material = json.dumps({"format": FORMAT, "kernel": self.kernel_sha256, "initramfs": self.initramfs_sha256,
                               "saver": self.saver_argv, "restored": self.restored_argv, "qemu": self.qemu_sha256},
                              sort_keys=True)
        return hashlib.sha256(material.encode()).hexdigest()


def file_sha256(path: Path) -> str:
    with open(path, "rb") as data:
        return hashlib.file_digest(data, "sha256").hexdigest()


def cache(qemu_version: str, root: Path = CACHE_ROOT, limit: int = CACHE_LIMIT_BYTES) -> SnapshotCache:
    return SnapshotCache(root, qemu_version, limit)


def store(snapshots: SnapshotCache, inputs: Inputs, received: Path, said_bytes: int, said_sha256: str,
          meta: dict, boot_console: Optional[Path] = None) -> Snapshot:
    """Keeps what arrived on L0 as the snapshot of `inputs`, if it is what L1 saved (its size and sha256 as L1
    counted them); SnapshotError otherwise, and nothing is kept."""
    got_bytes = received.stat().st_size if received.is_file() else -1
    if got_bytes != said_bytes:
        raise SnapshotError(f"L2's snapshot: L1 saved {said_bytes} bytes, {got_bytes} arrived in {received}")
    got_sha256 = file_sha256(received)
    if got_sha256 != said_sha256:
        raise SnapshotError(f"L2's snapshot: L1's sha256 {said_sha256}, {got_sha256} arrived in {received}")
    key = inputs.key()
    record = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "format": FORMAT,
              "inputs": inputs.__dict__, "bytes": got_bytes, "sha256": got_sha256, **meta}
    return snapshots.store(key, received, record, boot_console)
