#!/usr/bin/python3
"""The fully emulated SR-IOV path of issue 8, measured: an L1 guest (TCG) with
an emulated igb (SR-IOV PF) behind an emulated IOMMU (intel-iommu,
caching-mode=on) creates a VF, gives it the failover MAC through the PF,
binds it to vfio-pci and runs an L2 guest (TCG inside TCG) whose failover
primary is that VF (vfio-pci) and whose standby is a virtio-net
(failover=on). L2 runs the guest agent on a virtio-serial port; L1 reads the
agent's lines from a FIFO and marks its hello.

Both levels boot the minimal kernel of vnetct.setup.nested_kernel (issue 18:
built once from Debian's linux-source-6.12, every driver built in, so no
module is loaded anywhere). Every step prints a timestamped marker on L1's
console (L2's console is relayed through it); the host reads L1's serial
line by line and times each marker on arrival.

    /usr/bin/python3 guest_agent/image/nested/nested_vf.py [--out DIR] [--runs N] [--timeout S]
        [--l1-mem MB] [--l2-mem MB] [--l2-append TEXT]

Needs the C++ build's guest agent (build/guest_agent/vnetct-guest-agent, or
VNETCT_BUILD_DIR) and builds the kernel if it is not cached. Writes
DIR/run-N/l1-console.log (host arrival time, line) per run and
DIR/nested.json: each run's marks and step times, and each step's median."""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(REPO / "harness" / "python"))
from cpio_newc import dir_entry, file_entry, symlink_entry, write_newc  # noqa: E402
from initramfs_content import check_agent, check_busybox, initramfs_entries, strip_agent  # noqa: E402
from vnetct.core import paths  # noqa: E402
from vnetct.setup import nested_kernel  # noqa: E402

QEMU = "/usr/bin/qemu-system-x86_64"
MAC = "52:54:00:6f:55:cc"
AGENT_PORT = "org.vnetct.agent"
ROMS = ["bios-256k.bin", "linuxboot_dma.bin", "kvmvapic.bin", "vgabios-stdvga.bin", "efi-virtio.rom",
        "efi-e1000e.rom"]
L1_APPLETS = ("sh", "mount", "ls", "cat", "cut", "echo", "sed", "grep", "readlink", "basename", "poweroff",
              "head", "mkfifo")

L1_INIT = r"""#!/bin/sh
mark() { echo "NESTED $(cut -d' ' -f1 /proc/uptime) $*"; }
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs dev /dev
mark l1-init
PF=$(ls /sys/bus/pci/drivers/igb | grep '^0000' | head -n1)
PFNET=$(ls /sys/bus/pci/devices/$PF/net | head -n1)
mark pf "$PF" "$PFNET" totalvfs=$(cat /sys/bus/pci/devices/$PF/sriov_totalvfs)
/usr/bin/ip link set "$PFNET" up
echo 1 > /sys/bus/pci/devices/$PF/sriov_numvfs || mark numvfs-failed
VF=$(basename "$(readlink /sys/bus/pci/devices/$PF/virtfn0)")
mark vf-created "$VF" driver=$(basename "$(readlink /sys/bus/pci/devices/$VF/driver)")
/usr/bin/ip link set "$PFNET" vf 0 mac {mac} && mark vf-mac-set || mark vf-mac-failed
echo vfio-pci > /sys/bus/pci/devices/$VF/driver_override
[ -e /sys/bus/pci/devices/$VF/driver ] && echo "$VF" > /sys/bus/pci/devices/$VF/driver/unbind
echo "$VF" > /sys/bus/pci/drivers_probe
mark vfio-bound "$VF" driver=$(basename "$(readlink /sys/bus/pci/devices/$VF/driver)") group=$(basename "$(readlink /sys/bus/pci/devices/$VF/iommu_group)")
mkfifo /run/agent.in /run/agent.out
while read -r line; do
  case "$line" in *'"hello"'*) mark l2-agent-hello;; esac
  echo "L2AGENT $line"
done < /run/agent.out &
mark l2-start
/usr/bin/qemu-system-x86_64 -L /usr/share/qemu -machine q35 -accel tcg,tb-size={l2_tb_mb} -cpu max -m {l2_mem} \
  -smp 1 -nodefaults -display none -no-reboot -serial stdio -kernel /l2/bzImage -initrd /l2/initrd \
  -append "console=ttyS0 panic=-1 printk.time=1 {l2_append}" \
  -device pcie-root-port,id=root1,chassis=1,slot=1 -device pcie-root-port,id=root2,chassis=2,slot=2 \
  -device virtio-serial-pci,id=agentbus -chardev pipe,id=agent,path=/run/agent \
  -device virtserialport,chardev=agent,name={agent_port} \
  -netdev hubport,id=hn0,hubid=0 \
  -device virtio-net-pci,netdev=hn0,id=net0,mac={mac},bus=root1,failover=on \
  -device vfio-pci,host=$VF,id=hostdev0,bus=root2,failover_pair_id=net0 2>&1 | sed 's/^/L2 /'
mark l2-exited
poweroff -f
"""

# The agent runs as a child so that L2 stays up when it exits (and says so).
L2_INIT = r"""#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
read -r uptime idle < /proc/uptime
echo "NESTED-L2 $uptime l2-init"
(/usr/bin/vnetct-guest-agent; echo "NESTED-L2 agent-exited status=$?") &
# the kernel's record of igbvf enslaved under net_failover (blocks until it is logged; it may be already)
record=$(grep -m1 'failover primary slave' /dev/kmsg)
read -r uptime idle < /proc/uptime
echo "NESTED-L2 $uptime l2-primary-enslaved kmsg=$record"
wait
poweroff -f
"""

# marker -> what in a console line makes it (the L1/L2 init's markers are matched by MARK_RE); with L2's kernel
# quiet (the default) only the init's markers show
KERNEL_MARKS = {
    "l2-kernel": re.compile(r"^L2 \[\s*[0-9.]+\] Linux version"),
}
# /dev/kmsg's record: "6,1234,71711800,-;virtio_net virtio1 eth0: failover primary slave:eth2 registered"
KMSG_TIME_RE = re.compile(r"kmsg=\d+,\d+,(\d+),")
MARK_RE = re.compile(r"^(?:L2 )?NESTED(-L2)? ([0-9.]+) (\S+)")
FAILURE_RE = re.compile(r"Kernel panic|insmod-failed|numvfs-failed|vf-mac-failed|agent-exited|l2-exited|"
                        r"qemu-system-x86_64: (?!warning: )")
DONE = ("l2-agent-hello", "l2-primary-enslaved")
L2_APPLETS = ("grep",)
# L2's kernel quiet: each console line costs L2 about 0.1 s under TCG inside TCG; lpj: no delay-loop calibration
L2_APPEND = "loglevel=4 lpj=24451350 tsc=reliable"
# step -> (from marker, to marker): what the run is measured by
STEPS = {
    "l1_boot": ("launch", "l1-init"),
    "l1_igb_probe": ("l1-init", "pf"),
    "vf_create": ("pf", "vf-created"),
    "vf_mac": ("vf-created", "vf-mac-set"),
    "vfio_bind": ("vf-mac-set", "vfio-bound"),
    "l2_start_to_init": ("l2-start", "l2-init"),
    "l2_init_to_agent_hello": ("l2-init", "l2-agent-hello"),
    "l2_boot_to_agent_hello": ("l2-start", "l2-agent-hello"),
    "l2_primary_enslaved": ("l2-start", "l2-primary-enslaved-logged"),
    "total": ("launch", "done"),
}


def library_closure(binary: str) -> list:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    return sorted({m.group(1) for m in re.finditer(r"(/\S+)\s+\(0x", out)})


def build_l2_initramfs(agent_binary: Path) -> bytes:
    """busybox, the stripped agent and /l2init; no modules (the kernel has its drivers built in); uncompressed:
    unpacking costs L2 nothing to decompress."""
    agent, _ = strip_agent(check_agent(agent_binary), print)
    entries = initramfs_entries(check_busybox(), agent, {}, init_text=L2_INIT)
    return write_newc(entries + [symlink_entry(f"bin/{applet}", "busybox") for applet in L2_APPLETS])


def build_l1_initramfs(l2_kernel: Path, l2_initrd: bytes, init: str, out: Path) -> None:
    entries = [dir_entry(d) for d in ("bin", "sbin", "proc", "sys", "dev", "tmp", "run", "usr", "usr/bin",
                                      "usr/share", "usr/share/qemu", "l2")]
    entries.append(file_entry("bin/busybox", check_busybox(), 0o755))
    entries += [symlink_entry(f"bin/{applet}", "busybox") for applet in L1_APPLETS]
    entries.append(file_entry("usr/bin/qemu-system-x86_64", Path(QEMU).read_bytes(), 0o755))
    entries.append(file_entry("usr/bin/ip", Path("/usr/bin/ip").read_bytes(), 0o755))  # iproute2: VF settings
    for lib in sorted(set(library_closure(QEMU)) | set(library_closure("/usr/bin/ip"))):
        parts = Path(lib).parent.parts[1:]
        entries += [dir_entry("/".join(parts[:i])) for i in range(1, len(parts) + 1)]
        entries.append(file_entry(lib.lstrip("/"), Path(lib).resolve().read_bytes(), 0o755))
    for rom in ROMS:  # wherever this QEMU's firmware search path (-L help) has them
        for directory in ("/usr/share/qemu", "/usr/share/seabios", "/usr/lib/ipxe/qemu"):
            source = Path(directory) / rom
            if source.exists():
                entries.append(file_entry(f"usr/share/qemu/{rom}", source.resolve().read_bytes()))
                break
    entries.append(file_entry("l2/bzImage", l2_kernel.read_bytes()))
    entries.append(file_entry("l2/initrd", l2_initrd))
    entries.append(file_entry("init", init.encode(), 0o755))
    unique, seen = [], set()
    for entry in entries:  # a library directory repeats for every library in it
        if entry.path not in seen:
            seen.add(entry.path)
            unique.append(entry)
    out.write_bytes(write_newc(unique))


def l1_argv(kernel: Path, initrd: Path, l1_mem: int) -> List[str]:
    return [QEMU, "-machine", "q35,kernel-irqchip=split", "-accel", "tcg", "-cpu", "max", "-m", str(l1_mem),
            "-smp", "2", "-nodefaults", "-display", "none", "-no-reboot",
            "-device", "intel-iommu,caching-mode=on,intremap=on",
            "-device", "pcie-root-port,id=root1,chassis=1,slot=1",
            "-netdev", "hubport,id=pfnet,hubid=0", "-device", "igb,netdev=pfnet,bus=root1,id=pf0",
            "-kernel", str(kernel), "-initrd", str(initrd),
            "-append", "console=ttyS0 panic=-1 rdinit=/init intel_iommu=on printk.time=1 loglevel=4",
            "-serial", "stdio"]


def run_once(argv: List[str], out: Path, timeout: float) -> dict:
    """Boot L1, read its console until L2's agent said hello and igbvf is the failover primary (or a failure
    line, or the deadline); the marks are host seconds since launch."""
    out.mkdir(parents=True, exist_ok=True)
    marks: Dict[str, dict] = {}
    failure: Optional[str] = None
    launched = time.monotonic()
    with open(out / "l1-console.log", "w") as console, open(out / "l1-qemu.stderr", "w") as stderr, \
            subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                             process_group=0) as l1:
        selector = selectors.DefaultSelector()
        selector.register(l1.stdout, selectors.EVENT_READ)
        pending = b""
        try:
            while failure is None and not all(m in marks for m in DONE):
                left = launched + timeout - time.monotonic()
                if left <= 0:
                    failure = f"timed out after {timeout:.0f} s waiting for {[m for m in DONE if m not in marks]}"
                    break
                if not selector.select(left):
                    continue
                chunk = os.read(l1.stdout.fileno(), 65536)
                if not chunk:
                    failure = f"L1 exited (status {l1.wait()}) before {[m for m in DONE if m not in marks]}"
                    break
                now = round(time.monotonic() - launched, 2)
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    line = raw.decode(errors="replace").rstrip("\r")
                    console.write(f"{now:8.2f} {line}\n")
                    name = _mark_of(line)
                    if name and name not in marks:
                        marks[name] = {"host_s": now, "line": line}
                        print(f"[{now:7.2f} s] {line}", flush=True)
                    if FAILURE_RE.search(line):
                        failure = line
        finally:
            if l1.poll() is None:
                os.killpg(l1.pid, 9)
            l1.wait()
    marks["launch"] = {"host_s": 0.0}
    enslaved = marks.get("l2-primary-enslaved")
    if enslaved and KMSG_TIME_RE.search(enslaved["line"]):
        # when the kernel logged it, in host time: the record's L2 time, against L2's uptime when it was printed
        logged_s = int(KMSG_TIME_RE.search(enslaved["line"]).group(1)) / 1e6
        printed_s = float(MARK_RE.match(enslaved["line"]).group(2))
        marks["l2-primary-enslaved-logged"] = {"host_s": round(enslaved["host_s"] - (printed_s - logged_s), 2),
                                               "l2_uptime_s": logged_s}
    if not failure:
        marks["done"] = {"host_s": max(marks[m]["host_s"] for m in DONE)}
    steps = {step: round(marks[b]["host_s"] - marks[a]["host_s"], 2)
             for step, (a, b) in STEPS.items() if a in marks and b in marks}
    return {"failure": failure, "steps_s": steps, "marks": marks}


def _mark_of(line: str) -> Optional[str]:
    match = MARK_RE.match(line)
    if match:
        return match.group(3)
    return next((name for name, pattern in KERNEL_MARKS.items() if pattern.search(line)), None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "out" / "nested")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1200.0, help="per run")
    parser.add_argument("--l1-mem", type=int, default=512, help="L1's memory (MiB)")
    parser.add_argument("--l2-mem", type=int, default=128, help="L2's memory (MiB)")
    parser.add_argument("--l2-tb-mb", type=int, default=32, help="L2's QEMU translation buffer (MiB)")
    parser.add_argument("--l2-append", default=L2_APPEND, help="more of L2's kernel command line")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    kernel = nested_kernel.ensure_kernel()
    kernel_s = time.monotonic() - started
    started = time.monotonic()
    init = (L1_INIT.replace("{mac}", MAC).replace("{agent_port}", AGENT_PORT)
            .replace("{l2_mem}", str(args.l2_mem)).replace("{l2_tb_mb}", str(args.l2_tb_mb))
            .replace("{l2_append}", args.l2_append))
    l1_initrd = args.out / "l1-initramfs.cpio"
    build_l1_initramfs(kernel.bzimage, build_l2_initramfs(paths.AGENT_BINARY), init, l1_initrd)
    initramfs_s = time.monotonic() - started
    argv = l1_argv(kernel.bzimage, l1_initrd, args.l1_mem)
    (args.out / "l1-argv.txt").write_text(" ".join(argv) + "\n")
    runs = []
    for index in range(args.runs):
        print(f"nested: run {index + 1}/{args.runs}", flush=True)
        runs.append(run_once(argv, args.out / f"run-{index + 1}", args.timeout))
        print(json.dumps({"failure": runs[-1]["failure"], "steps_s": runs[-1]["steps_s"]}), flush=True)
    passed = [run for run in runs if not run["failure"]]
    medians = {step: round(statistics.median(run["steps_s"][step] for run in passed), 2)
               for step in STEPS if passed and all(step in run["steps_s"] for run in passed)}
    result = {"kernel": {"bzimage": str(kernel.bzimage), "key": kernel.key, "package_version": kernel.package_version,
                         "build_seconds": kernel.build_seconds, "rebuilt": kernel.rebuilt,
                         "ensure_seconds": round(kernel_s, 1)},
              "build_initramfs_s": round(initramfs_s, 1), "l1_initramfs_bytes": l1_initrd.stat().st_size,
              "l1_mem_mib": args.l1_mem, "l2_mem_mib": args.l2_mem, "l2_tb_mib": args.l2_tb_mb,
              "l2_append": args.l2_append, "steps": {step: list(pair) for step, pair in STEPS.items()},
              "runs": runs, "passed": len(passed), "median_s": medians}
    (args.out / "nested.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"passed": f"{len(passed)}/{len(runs)}", "median_s": medians}))
    return 0 if len(passed) == len(runs) else 1


if __name__ == "__main__":
    sys.exit(main())
