"""Profile `qemu`: a real QEMU binary with the tiny Linux guest, each VM on
a wire of its own (a namespace with an eswitch-like bridge and TAPs)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

from vnetct.core import paths
from vnetct.core.native import HostError, vnetct_native
from vnetct.sut.base import PROFILES, Sut, SutOptions
from vnetct.vm.guest import Vm, VmSpec


class SutUnusable(Exception):
    """The SUT cannot be used at all (missing image, a binary that is no QEMU)."""


def qemu_version(qemu: str) -> str:
    try:
        result = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SutUnusable(f"--qemu {qemu}: cannot run it ({error})") from error
    if result.returncode != 0 or "QEMU emulator version" not in result.stdout:
        raise SutUnusable(f"--qemu {qemu}: '{qemu} --version' did not print a QEMU version "
                          f"(exit {result.returncode}): {result.stdout[:200]}{result.stderr[:200]}")
    return result.stdout.splitlines()[0].replace("QEMU emulator version ", "").strip()


def device_models(qemu: str) -> List[str]:
    """The names in `qemu -device help` (lines like `name "igb", bus PCI, desc "..."`)."""
    try:
        result = subprocess.run([qemu, "-device", "help"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SutUnusable(f"--qemu {qemu}: cannot list its device models ({error})") from error
    names = [line.split('"')[1] for line in result.stdout.splitlines() if line.startswith('name "')]
    if result.returncode != 0 or not names:
        raise SutUnusable(f"--qemu {qemu}: '{qemu} -device help' listed no device models (exit "
                          f"{result.returncode}): {result.stderr[:300]}")
    return names


def guest_image() -> dict:
    """The guest image the set-up built (kernel, initramfs, digest)."""
    image_json = paths.IMAGE_CACHE / "image.json"
    try:
        image = json.loads(image_json.read_text())
        kernel, initramfs = image["paths"]["kernel"], image["paths"]["initramfs"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SutUnusable(f"{image_json}: missing, unreadable or without paths.kernel and paths.initramfs "
                          f"({error!r}); run ./vnetct setup") from error
    return {"kernel": kernel, "initramfs": initramfs, "digest": image.get("inputs_hash"),
            "kernel_version": image.get("kernel_version")}


class QemuSut(Sut):
    profile = PROFILES["qemu"]

    def __init__(self, options: SutOptions):
        super().__init__(options)
        from vnetct.setup import accel

        self.binary = options.qemu
        self.version = qemu_version(self.binary)
        self.image = guest_image()
        self.accelerator = accel.choose(self.binary, self.image, paths.CACHE, options.progress)
        options.progress(f"vnetct: accelerator {self.accelerator.name} ({self.accelerator.reason})")
        self._live_tap: Optional[dict] = None
        self._virtio_status: Optional[str] = None  # "" once probed and usable
        self._device_models: Optional[List[str]] = None
        self._snapshot_plan = None
        self.run = None

    # Booted guests are saved once and restored (vnetct.vm.snapshot); VNETCT_SNAPSHOTS=0 boots every one.
    snapshots_supported = True

    @property
    def snapshots(self) -> bool:
        return self.snapshots_supported and os.environ.get("VNETCT_SNAPSHOTS", "1") != "0"

    def snapshot_plan(self):
        if self._snapshot_plan is None:
            from vnetct.vm import snapshot

            identity = self.identity()
            cache = snapshot.SnapshotCache(paths.CACHE / "snapshots", self.version)
            self._snapshot_plan = snapshot.SnapshotPlan(cache, identity["fingerprint"] or self.binary,
                                                        str(self.image.get("digest")))
        return self._snapshot_plan

    def identity(self) -> dict:
        from vnetct.setup import releases

        # A --qemu-release wrapper: the digest is the wrapped binary's, and the release says where it came from.
        release = releases.describe(self.binary)
        fingerprint = release["qemu_sha256"] if release else _digest(self.binary)
        return {"profile": self.profile.name, "name": "QEMU", "version": self.version, "binary": self.binary,
                "fingerprint": fingerprint, "qemu_binary": self.binary, "qemu_version": self.version,
                **({"qemu_release": release} if release else {}),
                "accelerator": self.accelerator.to_json(), "machine": "q35",
                "guest_kernel": self.image.get("kernel_version"), "guest_image_digest": self.image.get("digest"),
                "host_kernel": os.uname().release, "fault": self.options.fault,
                "snapshots": "on" if self.snapshots else "off"}

    def missing(self) -> Dict[str, str]:
        if "igb" not in self.device_models():
            return {"igb": f"this QEMU ({self.version}) has no igb device model ('-device help' does not list "
                           "it; QEMU has it since 8.0)"}
        return {}

    def device_models(self) -> List[str]:
        """The device models `-device help` lists (asked once per run)."""
        if self._device_models is None:
            self._device_models = device_models(self.binary)
        return self._device_models

    def lacks(self, capability: str) -> Optional[str]:
        if capability in ("live-tap-series", "live-tap-incoming-fds"):
            from vnetct.livetap import series

            interface = self.live_tap_interface()
            if interface is None:
                return series.missing(self.live_tap_probe())
            if capability == "live-tap-incoming-fds" and not interface.incoming_fds:
                return (f"this QEMU's live-TAP series has no TAP netdev option incoming-fds ({interface.revision}): "
                        f"its target TAP is told apart by the netdev property alone")
            return None
        if capability == "virtio-status":
            return self.virtio_status_probe()
        return super().lacks(capability)

    def virtio_status_probe(self) -> Optional[str]:
        """Why this QEMU cannot show a virtio device's feature bits over QMP
        (x-query-virtio-status), or None. Probed once per run on a probe VM
        (its agent's virtio-serial is enough): QEMU 11.1.3 aborts on that
        command, and a case's VM must not be the one to find out."""
        if self._virtio_status is None:
            from vnetct.vm.factory import VmFactory

            factory = VmFactory(self.run, self.run.run_dir / "vms", "probe")
            try:
                vm = factory.vm(VmSpec("virtio-status-probe", snapshot=False))
                try:
                    path = vm.qmp.execute("x-query-virtio")[0]["path"]
                    vm.qmp.execute("x-query-virtio-status", {"path": path})
                    self._virtio_status = ""
                except (HostError, IndexError, KeyError, TypeError) as error:
                    exited = vm.process.poll()
                    last = (vm.stderr_text().strip().splitlines() or ["-"])[-1]
                    self._virtio_status = (
                        f"x-query-virtio-status is unusable on this QEMU ({type(error).__name__}: {error}; QEMU "
                        f"{exited.describe() if exited else 'still running'}; its last stderr line: {last})")
            finally:
                factory.close()
        return self._virtio_status or None

    def live_tap_probe(self) -> dict:
        """What this QEMU offers of the live-TAP series (probed once per run:
        a probe starts a QEMU)."""
        if self._live_tap is None:
            from vnetct.livetap import series
            from vnetct.vm.factory import VmFactory

            factory = VmFactory(self.run, self.run.run_dir / "vms", "probe")
            try:
                self._live_tap = series.probe(factory.vm(VmSpec("livetap-probe", snapshot=False)))
            finally:
                factory.close()
        return self._live_tap

    def live_tap_interface(self):
        from vnetct.livetap import series

        return series.Interface.of(self.live_tap_probe())

    def make_wire(self, run, index: int, taps: int):
        return vnetct_native.Topology.create(
            netns=f"{run.netns_prefix}-{index}", device_prefix=f"v{run.short_id}{index:x}"[:9],
            taps=taps, peer_address="198.18.0.1/24")

    def make_vm(self, run, spec: VmSpec, artifacts: Path, sockets: Path, wire, taps: List[str],
                tap_fds: Optional[List[int]], incoming: bool) -> Vm:
        vm = Vm(spec, self.binary, self.accelerator, self.image, sockets, artifacts, wire=wire, taps=taps,
                on_step=lambda text: run.step(text), incoming=incoming, tap_fds=tap_fds)
        vm.lacks = self.lacks  # what the cases may ask of this QEMU besides the VM itself
        if self.snapshots and spec.snapshot and not incoming:
            vm.snapshot_plan = self.snapshot_plan()
        if self.options.fault:
            from vnetct.faults.catalog import fault_named
            from vnetct.faults.seed import seed

            seed(vm, fault_named(self.options.fault))
        return vm


def _digest(path: str) -> Optional[str]:
    """sha256 of the binary under test (what exactly was tested)."""
    import hashlib

    try:
        with open(path, "rb") as binary:
            return "sha256:" + hashlib.file_digest(binary, "sha256").hexdigest()
    except OSError:
        return None


SUT = QemuSut
