"""Guest snapshots: a booted guest (agent ready, no NIC driver loaded, so the
case still sees the negotiation) saved once and restored for every later VM
with the same QEMU command line, QEMU binary and guest image.

The cache key is a digest of all of these: the command line with what is
particular to one VM replaced (its name, socket and artifact directories, TAP
names), the QEMU binary's sha256 and the guest image's digest. Any change of
them is another key, never a wrong restore. A snapshot is made by a throwaway
VM (the "saver") that boots with the VM's own command line, is stopped and
migrated to a file; the VM under test is then restored from that file like
every later one, so the first run and the later ones test the same thing.

A restore is an incoming migration: it happens on a QMP connection of its own
(its transcript `qmp-<vm>-restore.jsonl`), which is closed before the VM's own
connection opens. The VM's trace, event list and QMP transcript start after
the restore; the restore is never judged as the migration under test.

Where the state goes: `file:` on QEMU 8.2 and later; before that (7.2 in the
release matrix) `exec:cat`, which every release has."""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from vnetct.core.native import HostError, HostTimeout

CACHE_LIMIT_BYTES = int(os.environ.get("VNETCT_SNAPSHOT_CACHE_MB", "4096")) * 1024 * 1024
SAVE_TIMEOUT_S = 60.0     # the saver's migration to the file, once its guest is up
RESTORE_TIMEOUT_S = 30.0  # loading the file into the VM under test
FORMAT = 1                # bump when what a snapshot holds changes meaning


class SnapshotError(Exception):
    """A snapshot could not be made or loaded; the message says which step."""


@dataclass
class Snapshot:
    key: str
    directory: Path

    @property
    def state(self) -> Path:
        return self.directory / "state"

    @property
    def meta(self) -> Path:
        return self.directory / "meta.json"

    @property
    def boot_serial(self) -> Path:
        """The saver's serial console: how the guest of this snapshot booted."""
        return self.directory / "boot-serial.log"


def _sha256(path: Path) -> str:
    with open(path, "rb") as data:
        return hashlib.file_digest(data, "sha256").hexdigest()


def canonical_argv(argv: List[str], name: str, sockets: Path, artifacts: Path, taps: List[str]) -> List[str]:
    """`argv` without what is particular to one VM: its name, directories and
    TAP names become placeholders, `-S` goes (a restore decides when to run),
    and the QMP socket is the same whether a fault's interposer serves it."""
    words = []
    skip_name = False
    for word in argv:
        if skip_name:
            words.append("<name>")
            skip_name = False
            continue
        if word == "-name":
            skip_name = True
        if word == "-S":
            continue
        word = word.replace(str(sockets), "<sockets>").replace(str(artifacts), "<artifacts>")
        word = word.replace("qmp-qemu.sock", "qmp.sock").replace(f"serial-{name}.log", "serial.log")
        for index, tap in enumerate(taps):
            word = re.sub(rf"(?<=ifname=){re.escape(tap)}(?=,|$)", f"<tap{index}>", word)
        words.append(word)
    return words


def cache_key(canonical: List[str], qemu_sha256: str, image_digest: str) -> str:
    material = json.dumps({"format": FORMAT, "argv": canonical, "qemu": qemu_sha256, "image": image_digest},
                          sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()


def has_file_uri(qemu_version: str) -> bool:
    """QEMU 8.2 added the `file:` migration URI."""
    match = re.match(r"(\d+)\.(\d+)", qemu_version)
    return match is not None and (int(match.group(1)), int(match.group(2))) >= (8, 2)


def save_uri(path: Path, qemu_version: str) -> str:
    return f"file:{path}" if has_file_uri(qemu_version) else f"exec:cat > {shlex.quote(str(path))}"


def load_uri(path: Path, qemu_version: str) -> str:
    return f"file:{path}" if has_file_uri(qemu_version) else f"exec:cat {shlex.quote(str(path))}"


class SnapshotCache:
    """Snapshots under `root`, at most `limit` bytes (least recently used go
    first). Makers of the same key take turns (a lock per key): the second
    finds the first one's snapshot."""

    def __init__(self, root: Path, qemu_version: str, limit: int = CACHE_LIMIT_BYTES):
        self.root = root
        self.qemu_version = qemu_version
        self.limit = limit

    def snapshot(self, key: str) -> Snapshot:
        return Snapshot(key, self.root / key[:32])

    def lock(self, key: str):
        self.root.mkdir(parents=True, exist_ok=True)
        handle = open(self.root / f"{key[:32]}.lock", "w")
        fcntl.flock(handle, fcntl.LOCK_EX)
        return handle

    def find(self, key: str) -> Optional[Snapshot]:
        snapshot = self.snapshot(key)
        try:
            meta = json.loads(snapshot.meta.read_text())
        except (OSError, ValueError):
            return None
        if meta.get("key") != key or not snapshot.state.is_file():
            return None
        # A state that is not what its meta recorded (cut short, changed on disk) is never restored.
        if "bytes" in meta and snapshot.state.stat().st_size != meta["bytes"]:
            return None
        if "sha256" in meta and _sha256(snapshot.state) != meta["sha256"]:
            return None
        os.utime(snapshot.meta)  # recently used
        return snapshot

    def forget(self, key: str) -> None:
        shutil.rmtree(self.snapshot(key).directory, ignore_errors=True)

    def store(self, key: str, state: Path, meta: dict, boot_serial: Optional[Path] = None) -> Snapshot:
        snapshot = self.snapshot(key)
        shutil.rmtree(snapshot.directory, ignore_errors=True)
        snapshot.directory.mkdir(parents=True)
        os.rename(state, snapshot.state)
        if boot_serial is not None and boot_serial.is_file():
            shutil.copyfile(boot_serial, snapshot.boot_serial)
        partial = snapshot.meta.with_suffix(".tmp")
        partial.write_text(json.dumps({"key": key, **meta}, indent=2, sort_keys=True) + "\n")
        os.rename(partial, snapshot.meta)  # the meta last: a snapshot without it is not found
        self.evict(keep=key)
        return snapshot

    def evict(self, keep: str) -> List[str]:
        """Removes the least recently used snapshots until the cache fits its limit."""
        entries = []
        for meta in self.root.glob("*/meta.json"):
            directory = meta.parent
            size = sum(f.stat().st_size for f in directory.iterdir() if f.is_file())
            entries.append((meta.stat().st_mtime, directory, size))
        total = sum(size for _, _, size in entries)
        removed = []
        for _, directory, size in sorted(entries, key=lambda entry: entry[0]):
            if total <= self.limit:
                break
            if directory.name == keep[:32]:
                continue
            shutil.rmtree(directory, ignore_errors=True)
            total -= size
            removed.append(directory.name)
        return removed


@dataclass
class SnapshotPlan:
    """How one VM comes up from a snapshot: the cache, its key, the QEMU binary's digest."""
    cache: SnapshotCache
    qemu_sha256: str
    image_digest: str

    def key_of(self, vm) -> str:
        canonical = canonical_argv(vm.argv, vm.name, vm.sockets, vm.artifacts, vm.taps)
        return cache_key(canonical, self.qemu_sha256, self.image_digest)

    def ensure(self, vm) -> tuple:
        """The snapshot for `vm` (made now by a saver if the cache has none),
        and what it cost: {"created": bool, "save_s", "boot_s"}."""
        key = self.key_of(vm)
        found = self.cache.find(key)
        if found is not None:
            return found, {"created": False}
        with self.cache.lock(key):
            found = self.cache.find(key)  # made by another lane meanwhile
            if found is not None:
                return found, {"created": False}
            return self._make(vm, key)

    def _make(self, vm, key: str) -> tuple:
        from vnetct.vm.guest import Vm

        started = time.monotonic()
        saver_artifacts = vm.artifacts / "snapshot-save"
        saver_sockets = Path(str(vm.sockets) + "-save")
        vm.step(f"{vm.name}: no snapshot {key[:12]} yet: booting a guest to save it")
        saver = Vm(dataclasses.replace(vm.spec), vm.qemu, vm.accel, vm.image, saver_sockets, saver_artifacts,
                   wire=vm.wire, taps=vm.taps, on_step=vm.step,
                   tap_fds=[os.dup(fd) for fd in vm.tap_fds])
        saver.argv = [word.replace(str(vm.sockets), str(saver_sockets))
                      .replace(str(vm.artifacts), str(saver_artifacts))
                      .replace("qmp-qemu.sock", "qmp.sock") for word in vm.argv]
        partial = self.cache.root / f"{key[:32]}.state.tmp"
        try:
            saver.start()
            saver.wait_booted()
            boot_s = saver.boot_seconds
            saved = time.monotonic()
            saver.qmp.execute("stop")
            saver.qmp.execute("migrate-set-capabilities",
                              {"capabilities": [{"capability": "events", "state": True}]})
            mark = len(saver.qmp.events)
            saver.qmp.execute("migrate", {"uri": save_uri(partial, self.cache.qemu_version)})
            status = wait_migration_end(saver.qmp, mark, SAVE_TIMEOUT_S, f"{vm.name}: saving its snapshot")
            if status != "completed":
                raise SnapshotError(f"{vm.name}: saving the snapshot ended '{status}' "
                                    f"(see {saver_artifacts}/qmp-{vm.name}.jsonl)")
            save_s = time.monotonic() - saved
            meta = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "qemu_version":
                    self.cache.qemu_version, "qemu_sha256": self.qemu_sha256, "image": self.image_digest,
                    "argv": canonical_argv(vm.argv, vm.name, vm.sockets, vm.artifacts, vm.taps),
                    "boot_s": round(boot_s, 3), "save_s": round(save_s, 3), "bytes": partial.stat().st_size}
            snapshot = self.cache.store(key, partial, meta, saver.serial_log)
        except (HostError, OSError) as error:
            raise SnapshotError(f"{vm.name}: could not make its snapshot {key[:12]}: {error}") from error
        finally:
            saver.stop()
            shutil.rmtree(saver_sockets, ignore_errors=True)
            partial.unlink(missing_ok=True)
        vm.step(f"{vm.name}: snapshot {key[:12]} saved ({meta['bytes'] / 1e6:.0f} MB; boot {boot_s:.1f} s, "
                f"save {save_s:.1f} s)")
        return snapshot, {"created": True, "boot_s": round(boot_s, 3), "save_s": round(save_s, 3),
                          "total_s": round(time.monotonic() - started, 3)}


def wait_migration_end(qmp, mark: int, timeout: float, what: str) -> str:
    """The final status of a migration whose MIGRATION events come after event
    `mark` (completed, failed or cancelled); raises HostTimeout after `timeout`."""
    deadline = time.monotonic() + timeout
    index = mark
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise HostTimeout(f"{what}: the migration did not end within {timeout:.0f} s")
        event = qmp.wait_event("MIGRATION", None, index, timeout=remaining)
        index = event["index"] + 1
        status = (event.get("data") or {}).get("status")
        if status in ("completed", "failed", "cancelled"):
            return status


def restore(vm, plan: SnapshotPlan, timeout: float) -> dict:
    """Starts `vm` from its snapshot (made first if missing): QEMU with
    `-incoming defer` and `-S`, the agent connected before the state loads
    (as it was when it was saved, so the guest sees no hang-up), the state
    loaded on a QMP connection of its own, then the VM's own QMP connection.
    Returns what happened, for the case's record. The VM is left paused."""
    from vnetct.core.native import vnetct_native
    from vnetct.vm.stderr_tap import StderrTap

    snapshot, made = plan.ensure(vm)
    if snapshot.boot_serial.is_file():  # the boot this guest comes from, beside its own console
        shutil.copyfile(snapshot.boot_serial, vm.boot_serial_log)
    vm.step(f"restoring {vm.name} from snapshot {snapshot.key[:12]}")
    argv = list(vm.argv) + ["-incoming", "defer"]
    vm.started_at = time.monotonic()
    vm.stderr_tap = StderrTap(vm.sockets / "stderr.fifo", vm.stderr_log)
    vm.process = vnetct_native.Process.spawn(argv, "/dev/null", str(vm.stderr_tap.fifo), vm.netns, vm.tap_fds)
    loader = vm.connect_qmp(vm.artifacts / f"qmp-{vm.name}-restore.jsonl", timeout)
    greeted = time.monotonic()
    vm.agent = vnetct_native.GuestAgentClient.connect(str(vm.sockets / "agent.sock"), str(vm.agent_transcript),
                                                      timeout=timeout)
    loader.execute("migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": True}]})
    mark = len(loader.events)
    loader.execute("migrate-incoming", {"uri": load_uri(snapshot.state, plan.cache.qemu_version)})
    try:
        status = wait_migration_end(loader, mark, RESTORE_TIMEOUT_S, f"{vm.name}: restoring snapshot {snapshot.key[:12]}")
    except HostTimeout:
        status = "not ended"
    if status != "completed":
        said = vm.stderr_text().strip()[-300:]
        vm.stop()
        plan.cache.forget(snapshot.key)  # a snapshot this QEMU cannot load is made again next time
        raise SnapshotError(f"{vm.name}: restoring snapshot {snapshot.key[:12]} ended '{status}': "
                            f"{said} (the snapshot was removed from the cache)")
    # Back to a booted VM's migration settings: no migration events unless a case asks.
    loader.execute("migrate-set-capabilities", {"capabilities": [{"capability": "events", "state": False}]})
    loaded = time.monotonic()
    del loader  # closes the restore's QMP connection: the VM's own opens next
    return {"snapshot": snapshot.key[:12], **made, "greeting_s": round(greeted - vm.started_at, 3),
            "load_s": round(loaded - greeted, 3)}
