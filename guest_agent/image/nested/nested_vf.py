#!/usr/bin/python3
"""The fully emulated SR-IOV path of issue 8, measured: an L1 guest (TCG) with
an emulated igb (SR-IOV PF) behind an emulated IOMMU (intel-iommu,
caching-mode=on) creates a VF, gives it the failover MAC through the PF,
binds it to vfio-pci and runs an L2 guest (TCG inside TCG) whose failover
primary is that VF (vfio-pci) and whose standby is a virtio-net
(failover=on). Every step prints a timestamped marker on L1's console; the
host side times them.

    /usr/bin/python3 guest_agent/image/nested/nested_vf.py [--out DIR] [--timeout S]

Needs the project's guest image (./vnetct setup): the L2 guest is that
image plus a small /l2init; L1 is the same kernel with busybox, the igb,
igbvf and vfio modules, and the host's QEMU with its libraries and ROMs.
Writes DIR/l1-console.log and DIR/nested.json (the step times)."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from cpio_newc import dir_entry, file_entry, symlink_entry, write_newc  # noqa: E402
import kernel_modules  # noqa: E402

REPO = HERE.parents[2]
CACHE = REPO / ".cache" / "guest-image"
QEMU = "/usr/bin/qemu-system-x86_64"
MAC = "52:54:00:6f:55:cc"
L1_MODULES = ["dca", "i2c-algo-bit", "igb", "igbvf", "irqbypass", "vfio", "vfio_iommu_type1", "vfio-pci-core",
              "vfio-pci"]
ROMS = ["bios-256k.bin", "linuxboot_dma.bin", "kvmvapic.bin", "vgabios-stdvga.bin", "efi-virtio.rom",
        "efi-e1000e.rom"]

L1_INIT = r"""#!/bin/sh
mark() { echo "NESTED $(cut -d' ' -f1 /proc/uptime) $*"; }
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs dev /dev
mark l1-init
for m in {modules}; do insmod /lib/modules/nested/$m.ko || mark "insmod-failed $m"; done
mark modules-loaded
PF=$(ls /sys/bus/pci/drivers/igb | grep '^0000' | head -n1)
PFNET=$(ls /sys/bus/pci/devices/$PF/net | head -n1)
mark pf "$PF" "$PFNET" totalvfs=$(cat /sys/bus/pci/devices/$PF/sriov_totalvfs)
/usr/bin/ip link set "$PFNET" up
echo 1 > /sys/bus/pci/devices/$PF/sriov_numvfs || mark numvfs-failed
VF=$(basename "$(readlink /sys/bus/pci/devices/$PF/virtfn0)")
mark vf-created "$VF" driver=$(basename "$(readlink /sys/bus/pci/devices/$VF/driver)")
/usr/bin/ip link set "$PFNET" vf 0 mac {mac} && mark vf-mac-set || mark vf-mac-failed
/usr/bin/ip link show "$PFNET" | sed 's/^/NESTED-LINK /'
echo vfio-pci > /sys/bus/pci/devices/$VF/driver_override
[ -e /sys/bus/pci/devices/$VF/driver ] && echo "$VF" > /sys/bus/pci/devices/$VF/driver/unbind
echo "$VF" > /sys/bus/pci/drivers_probe
mark vfio-bound "$VF" driver=$(basename "$(readlink /sys/bus/pci/devices/$VF/driver)") group=$(basename "$(readlink /sys/bus/pci/devices/$VF/iommu_group)")
ls /sys/bus/pci/devices/$VF/iommu_group/devices | sed 's/^/NESTED-GROUP /'
ls -l /dev/vfio | sed 's/^/NESTED-DEV /'
mark l2-start
/usr/bin/qemu-system-x86_64 -L /usr/share/qemu -machine q35 -accel tcg -cpu max -m 384 -smp 1 -nodefaults \
  -display none -no-reboot -serial stdio -kernel /l2/vmlinuz -initrd /l2/initrd \
  -append "console=ttyS0 panic=-1 rdinit=/l2init loglevel=6" \
  -device pcie-root-port,id=root1,chassis=1,slot=1 -device pcie-root-port,id=root2,chassis=2,slot=2 \
  -netdev hubport,id=hn0,hubid=0 \
  -device virtio-net-pci,netdev=hn0,id=net0,mac={mac},bus=root1,failover=on \
  -device vfio-pci,host=$VF,id=hostdev0,bus=root2,failover_pair_id=net0 2>&1 | sed 's/^/L2 /'
mark l2-exited
poweroff -f
"""

L2_INIT = r"""#!/bin/sh
mark() { echo "NESTED-L2 $(cut -d' ' -f1 /proc/uptime) $*"; }
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs dev /dev
mark l2-init
for m in igbvf failover net_failover virtio_net; do insmod /lib/modules/vnetct/$m.ko || mark "insmod-failed $m"; done
mark l2-modules-loaded
i=0
while [ $i -lt 600 ]; do
  if dmesg | grep -q "failover primary slave"; then break; fi
  sleep 1; i=$((i+1))
done
dmesg | grep -i failover | sed 's/^/NESTED-L2-KLOG /'
for n in /sys/class/net/*; do echo "NESTED-L2-NETDEV $(basename $n) $(cat $n/address) $(basename $(readlink $n/device/driver 2>/dev/null) 2>/dev/null) master=$(basename $(readlink $n/master 2>/dev/null) 2>/dev/null)"; done
mark l2-done
poweroff -f
"""


def library_closure(binary: str) -> list:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libs = set()
    for line in out.splitlines():
        match = re.search(r"(/\S+)\s+\(0x", line)
        if match:
            libs.add(match.group(1))
    return sorted(libs)


def build_l1_initramfs(kernel_dir: Path, version: str, l2_initrd: bytes, out: Path) -> None:
    entries = [dir_entry(d) for d in ("bin", "sbin", "proc", "sys", "dev", "tmp", "lib", "lib/modules",
                                      "lib/modules/nested", "usr", "usr/bin", "usr/share", "usr/share/qemu",
                                      "l2", "lib64", "usr/lib", "usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu",
                                      "run")]
    entries.append(file_entry("bin/busybox", Path("/bin/busybox").read_bytes(), 0o755))
    for applet in ("sh", "mount", "insmod", "ls", "cat", "cut", "echo", "sed", "grep", "readlink",
                   "basename", "poweroff", "sleep", "head", "dmesg"):
        entries.append(symlink_entry(f"bin/{applet}", "busybox"))
    modules_root = kernel_dir / "lib" / "modules" / version
    found = kernel_modules.find_modules(kernel_dir, version, L1_MODULES)
    for name in L1_MODULES:
        entries.append(file_entry(f"lib/modules/nested/{name}.ko", kernel_modules.read_module(found[name])))
    entries.append(file_entry("usr/bin/qemu-system-x86_64", Path(QEMU).read_bytes(), 0o755))
    entries.append(file_entry("usr/bin/ip", Path("/usr/bin/ip").read_bytes(), 0o755))  # iproute2: VF settings
    seen_dirs = set()  # directories of the shared libraries
    for lib in sorted(set(library_closure(QEMU)) | set(library_closure("/usr/bin/ip"))):
        real = Path(lib).resolve()
        parent = str(Path(lib).parent).lstrip("/")
        for i in range(1, len(Path(parent).parts) + 1):
            d = "/".join(Path(parent).parts[:i])
            if d not in seen_dirs:
                seen_dirs.add(d)
                entries.append(dir_entry(d))
        entries.append(file_entry(lib.lstrip("/"), real.read_bytes(), 0o755))
    for rom in ROMS:  # wherever this QEMU's firmware search path (-L help) has them
        for directory in ("/usr/share/qemu", "/usr/share/seabios", "/usr/lib/ipxe/qemu"):
            source = Path(directory) / rom
            if source.exists():
                entries.append(file_entry(f"usr/share/qemu/{rom}", source.resolve().read_bytes()))
                break
    entries.append(file_entry("l2/vmlinuz", (kernel_dir / "boot" / f"vmlinuz-{version}").read_bytes()))
    entries.append(file_entry("l2/initrd", l2_initrd))
    init = L1_INIT.replace("{modules}", " ".join(L1_MODULES)).replace("{mac}", MAC)
    entries.append(file_entry("init", init.encode(), 0o755))
    unique, seen = [], set()
    for entry in entries:  # a library directory may repeat one made above
        if entry.path not in seen:
            seen.add(entry.path)
            unique.append(entry)
    out.write_bytes(write_newc(unique))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "out" / "nested")
    parser.add_argument("--timeout", type=float, default=2400.0)
    args = parser.parse_args()
    image = json.loads((CACHE / "image.json").read_text())
    version = image["kernel_version"]
    kernel_dir = CACHE / f"kernel-{version}"
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # L2: the guest image plus /l2init, as a second (uncompressed) cpio appended to it.
    # The kernel looks for the next archive only at a 4-byte boundary (zero bytes between are skipped).
    base = Path(image["paths"]["initramfs"]).read_bytes()
    l2 = base + b"\0" * (-len(base) % 512) + write_newc([file_entry("l2init", L2_INIT.encode(), 0o755)])
    l1_initrd = args.out / "l1-initramfs.cpio"
    build_l1_initramfs(kernel_dir, version, l2, l1_initrd)
    build_s = time.monotonic() - started
    console = args.out / "l1-console.log"
    argv = [QEMU, "-machine", "q35,kernel-irqchip=split", "-accel", "tcg", "-cpu", "max", "-m", "2048", "-smp", "2",
            "-nodefaults", "-display", "none", "-no-reboot",
            "-device", "intel-iommu,caching-mode=on,intremap=on",
            "-device", "pcie-root-port,id=root1,chassis=1,slot=1",
            "-netdev", "hubport,id=pfnet,hubid=0", "-device", "igb,netdev=pfnet,bus=root1,id=pf0",
            "-kernel", str(kernel_dir / "boot" / f"vmlinuz-{version}"), "-initrd", str(l1_initrd),
            "-append", "console=ttyS0 panic=-1 rdinit=/init intel_iommu=on loglevel=4",
            "-serial", f"file:{console}"]
    (args.out / "l1-argv.txt").write_text(" ".join(argv) + "\n")
    marks = {}
    with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(args.out / "l1-qemu.stderr", "w"),
                          process_group=0) as l1:
        launched = time.monotonic()
        try:
            while l1.poll() is None and time.monotonic() - launched < args.timeout:
                time.sleep(2)
                text = console.read_text(errors="replace") if console.exists() else ""
                for line in text.splitlines():
                    match = re.match(r"(?:L2 )?NESTED(-L2)? ([0-9.]+) (\S+)", line)
                    if match and match.group(3) not in marks:
                        marks[match.group(3)] = {"host_s": round(time.monotonic() - launched, 1),
                                                 "guest_uptime_s": float(match.group(2)),
                                                 "level": "L2" if match.group(1) else "L1", "line": line}
                        print(f"[{marks[match.group(3)]['host_s']:7.1f} s] {line}", flush=True)
        finally:
            if l1.poll() is None:
                os.killpg(l1.pid, 9)
                l1.wait()
    result = {"build_initramfs_s": round(build_s, 1), "l1_wall_s": round(time.monotonic() - launched, 1),
              "timed_out": time.monotonic() - launched >= args.timeout, "marks": marks}
    (args.out / "nested.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "marks"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
