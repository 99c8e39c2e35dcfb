"""The accelerator probe: KVM only if a real guest boot works under it,
otherwise TCG. The presence of /dev/kvm proves nothing (on this kind of
machine it is a software hypervisor in whose instruction emulator stock guest
kernels die). The verdict is cached per QEMU binary, kernel and /dev/kvm."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

from vnetct.vm.guest import Accelerator, GuestFailure, Vm, VmSpec, VmStartError
from vnetct.core.native import HostError

TCG = Accelerator("tcg", "", "max")
PROBE_BOOT_TIMEOUT = 25.0


def image_paths(image: dict) -> dict:
    """What the accelerator probe and a VM need of the guest image's image.json."""
    return {"kernel": image["paths"]["kernel"], "initramfs": image["paths"]["initramfs"],
            "digest": image.get("inputs_hash"), "kernel_version": image.get("kernel_version")}


def _cache_key(qemu: str, image: dict) -> str:
    qemu_stat = os.stat(qemu)
    try:
        kvm_stat = os.stat("/dev/kvm")
        kvm = f"{kvm_stat.st_rdev}:{kvm_stat.st_ino}"
    except OSError:
        kvm = "none"
    text = json.dumps([os.path.realpath(qemu), qemu_stat.st_size, qemu_stat.st_mtime_ns, image.get("digest"), kvm])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def choose(qemu: str, image: dict, cache_dir: Path, say: Callable[[str], None]) -> Accelerator:
    if os.environ.get("VNETCT_ACCEL") in ("tcg", "kvm"):
        forced = os.environ["VNETCT_ACCEL"]
        return Accelerator(forced, "forced by VNETCT_ACCEL", "max" if forced == "tcg" else "host")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return Accelerator("tcg", "no usable /dev/kvm", "max")
    cache = cache_dir / "accel-probe.json"
    key = _cache_key(qemu, image)
    verdicts = _cached_verdicts(cache)
    if key in verdicts:
        cached = verdicts[key]
        return Accelerator(cached["name"], cached["reason"] + " (cached probe)", cached["cpu"])
    say("accelerator: /dev/kvm exists; probing it with a real guest boot")
    started = time.monotonic()
    verdict = _probe_kvm(qemu, image)
    verdict.reason += f" (probe took {time.monotonic() - started:.1f} s)"
    cache_dir.mkdir(parents=True, exist_ok=True)
    # One verdict per QEMU binary (runs against several releases do not evict each other's).
    temp = cache.with_name(f"{cache.name}.{os.getpid()}")
    temp.write_text(json.dumps({"verdicts": {**_cached_verdicts(cache), key: verdict.to_json()}}))
    temp.replace(cache)
    return verdict


def _cached_verdicts(cache: Path) -> dict:
    """key -> verdict from the probe cache (an unreadable or old-format file is empty)."""
    try:
        verdicts = json.loads(cache.read_text()).get("verdicts", {})
        return {key: v for key, v in verdicts.items() if {"name", "reason", "cpu"} <= set(v)}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


def _probe_kvm(qemu: str, image: dict) -> Accelerator:
    kvm = Accelerator("kvm", "", "host")
    with tempfile.TemporaryDirectory(prefix="vnetct-probe-") as scratch:
        vm = Vm(VmSpec("kvm-probe", memory_mb=256), qemu, kvm, image, Path(scratch) / "s", Path(scratch) / "a")
        try:
            vm.start(timeout=10)
            vm.wait_booted(timeout=PROBE_BOOT_TIMEOUT)
            return Accelerator("kvm", f"a guest booted under KVM in {vm.boot_seconds:.1f} s", "host")
        except (VmStartError, GuestFailure, HostError) as error:
            first_line = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
            return Accelerator("tcg", f"KVM boot failed: {first_line}", "max")
        finally:
            vm.stop()
