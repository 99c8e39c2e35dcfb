"""The nested path's runs: prepare the inputs (the kernel, L2's initramfs,
L1's initramfs and /init, the host profile files, the snapshot key), make
L2's snapshot with a saving L1 if the cache has none, and restore L2 in an
L1 until igbvf is enslaved. Each run returns its markers and step times
(host seconds, each step between two markers' arrival on L1's console)."""

from __future__ import annotations

import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from vnetct.core import paths
from vnetct.nested import enslave, host_profiles, l1, l2, l2_snapshot, session
from vnetct.vm.snapshot import Snapshot, SnapshotCache, SnapshotError

# step -> (from marker, to marker)
COMMON_STEPS = {
    "l1_boot": ("launch", "l1-init"),
    "vf_create": ("pf", "source-vf-created"),
    "vf_mac": ("source-vf-created", "source-vf-mac-set"),
    "vfio_bind": ("source-vf-mac-set", "source-vfio-bound"),
    "target_vf_to_vfio": ("source-vfio-bound", "target-vfio-bound"),
}
SAVE_STEPS = {
    **COMMON_STEPS,
    "l2_cold_boot_to_agent_hello": ("l2-start", "l2-agent-hello"),
    "l2_save": ("l2-save-start", "l2-saved"),
    "l2_state_to_l0": ("l2-saved", "l2-state-sent"),
    "total": ("launch", "done"),
}
RESTORE_STEPS = {
    **COMMON_STEPS,
    "l2_qemu_to_qmp": ("l2-start", "l2-restore-start"),
    "l2_load": ("l2-restore-start", "l2-loaded"),
    "restore_to_agent_hello": ("l2-restore-start", "l2-agent-hello"),
    "restore_to_enslaved_kernel_record": ("l2-restore-start", "l2-primary-enslaved-logged"),
    "restore_to_enslaved_judged": ("l2-restore-start", "done"),  # the report that showed igbvf enslaved
    "total": ("launch", "done"),
}
SAVED_RE = re.compile(r"l2-saved bytes=(\d+) sha256=([0-9a-f]{64})")
KMSG_TIME_RE = re.compile(r"kmsg=\d+,\d+,(\d+),")


class NestedRunFailed(Exception):
    """A nested run failed; the message says which step, the record is in `.record`."""

    def __init__(self, message: str, record: dict):
        super().__init__(message)
        self.record = record


@dataclass
class Prepared:
    config: l1.L1Config
    kernel: Path
    base_initrd: Path
    inputs: l2_snapshot.Inputs
    profiles: Dict[str, Path]
    out: Path


def prepare(config: l1.L1Config, kernel: Path, out: Path, log: Callable[[str], None] = print) -> Prepared:
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    l2_initrd = l2.build_initramfs(paths.AGENT_BINARY, log)
    base = out / "l1-initramfs.cpio"
    base.write_bytes(l1.build_initramfs(kernel, l2_initrd, l1.render_init(config)))
    inputs = l2_snapshot.Inputs(kernel_sha256=l2_snapshot.file_sha256(kernel), initramfs_sha256=l1.digest(l2_initrd),
                                saver_argv=l2.argv(config.l2, restored=False),
                                restored_argv=l2.argv(config.l2, restored=True),
                                qemu_sha256=l2_snapshot.file_sha256(Path(l1.QEMU)))
    profiles = host_profiles.write(out / "host-profiles", list(config.pfs), config.l2.mac)
    log(f"nested: prepared in {time.monotonic() - started:.1f} s (L1 initramfs {base.stat().st_size / 1e6:.0f} MB, "
        f"L2 snapshot key {inputs.key()[:12]})")
    return Prepared(config, kernel, base, inputs, profiles, out)


def steps_of(marks: Dict[str, dict], steps: Dict[str, Tuple[str, str]]) -> Dict[str, float]:
    return {step: round(marks[b]["host_s"] - marks[a]["host_s"], 2)
            for step, (a, b) in steps.items() if a in marks and b in marks}


def _record(prepared: Prepared, result: session.L1Result, steps: Dict[str, Tuple[str, str]]) -> dict:
    problems = host_profiles.check_against_l1(prepared.profiles, list(prepared.config.pfs), result.console.lines)
    _enslave_logged(result.console.marks)
    return {"failure": result.failure, "host_profile_problems": problems, "wire": result.wire,
            "steps_s": steps_of(result.console.marks, steps),
            "marks": {name: mark["host_s"] for name, mark in result.console.marks.items()}}


def _enslave_logged(marks: Dict[str, dict]) -> None:
    """When L2's kernel logged the enslave, in host time: the record's L2 time against L2's uptime when its
    init printed it."""
    printed = marks.get("l2-primary-enslaved")
    match = KMSG_TIME_RE.search(printed["line"]) if printed else None
    if match:
        logged_s = int(match.group(1)) / 1e6
        uptime_s = float(session.MARK_RE.match(printed["line"]).group(2))
        marks["l2-primary-enslaved-logged"] = {"host_s": round(printed["host_s"] - (uptime_s - logged_s), 2),
                                               "line": printed["line"]}


def save(prepared: Prepared, snapshots: SnapshotCache, out: Path, timeout: float,
         log: Callable[[str], None] = print) -> Tuple[Snapshot, dict]:
    """Boots L2 in a saving L1 and keeps its snapshot (checked against L1's own size and sha256)."""
    key = prepared.inputs.key()
    partial = snapshots.root / f"{key[:32]}.state.tmp"
    snapshots.root.mkdir(parents=True, exist_ok=True)
    partial.unlink(missing_ok=True)
    result = session.run_l1(
        lambda fds, socket: l1.argv(prepared.kernel, prepared.base_initrd, prepared.config, "save", fds, socket,
                                    partial),
        out, timeout, lambda console: "l2-state-sent" in console.marks, len(prepared.config.pfs), log=log)
    record = _record(prepared, result, SAVE_STEPS)
    try:
        if result.failure or record["host_profile_problems"]:
            raise NestedRunFailed(f"saving L2: {result.failure or record['host_profile_problems']} "
                                  f"(console: {out / 'l1-console.log'})", record)
        said = SAVED_RE.search(result.console.mark_line("l2-saved"))
        if said is None:
            raise NestedRunFailed(f"saving L2: L1's l2-saved marker has no size and sha256: "
                                  f"{result.console.mark_line('l2-saved')}", record)
        meta = {"steps_s": record["steps_s"], "l1_mem_mib": prepared.config.mem_mib,
                "l2_mem_mib": prepared.config.l2.mem_mib}
        try:
            snapshot = l2_snapshot.store(snapshots, prepared.inputs, partial, int(said.group(1)), said.group(2),
                                         meta, out / "l1-console.log")
        except SnapshotError as error:
            raise NestedRunFailed(str(error), record) from error
    finally:
        partial.unlink(missing_ok=True)
    record["snapshot"] = {"key": key[:12], "bytes": int(said.group(1))}
    return snapshot, record


def ensure_snapshot(prepared: Prepared, snapshots: SnapshotCache, out: Path, timeout: float,
                    log: Callable[[str], None] = print) -> Tuple[Snapshot, Optional[dict]]:
    """The cached snapshot (None: nothing made), or a new one and its saving run's record."""
    key = prepared.inputs.key()
    found = snapshots.find(key)
    if found is not None:
        return found, None
    with snapshots.lock(key):
        found = snapshots.find(key)
        if found is not None:
            return found, None
        log(f"nested: no L2 snapshot {key[:12]} yet: booting L2 in a saving L1")
        return save(prepared, snapshots, out, timeout, log)


def restore(prepared: Prepared, snapshot: Snapshot, out: Path, timeout: float,
            log: Callable[[str], None] = print) -> dict:
    """L1 with the snapshot in its initramfs restores L2 until igbvf is the failover primary (judged from
    L2's agent report); raises NestedRunFailed otherwise."""
    out.mkdir(parents=True, exist_ok=True)
    initrd = out / "l1-initramfs-restore.cpio"
    with open(initrd, "wb") as written, open(prepared.base_initrd, "rb") as base:
        while chunk := base.read(1 << 22):
            written.write(chunk)
        written.write(l1.state_archive(snapshot.state))
    verdict: List[enslave.Enslaved] = []

    def done(console: session.Console) -> bool:
        if not verdict:
            found = enslave.judge(enslave.agent_lines(console.lines), prepared.config.l2.mac)
            if found is not None:
                verdict.append(found)
        return bool(verdict)

    try:
        result = session.run_l1(
            lambda fds, socket: l1.argv(prepared.kernel, initrd, prepared.config, "restore", fds, socket, None,
                                        snapshot.state.stat().st_size),
            out, timeout, done, len(prepared.config.pfs), log=log)
    finally:
        initrd.unlink(missing_ok=True)
    record = _record(prepared, result, RESTORE_STEPS)
    record["snapshot"] = snapshot.key[:12]
    record["enslaved"] = verdict[0].__dict__ if verdict else None
    if result.failure or record["host_profile_problems"]:
        raise NestedRunFailed(f"restoring L2: {result.failure or ''} {record['host_profile_problems'] or ''} "
                              f"(console: {out / 'l1-console.log'})".replace("  ", " "), record)
    return record


def medians(records: List[dict], steps: Dict[str, Tuple[str, str]]) -> Dict[str, float]:
    return {step: round(statistics.median(r["steps_s"][step] for r in records), 2)
            for step in steps if records and all(step in r["steps_s"] for r in records)}
