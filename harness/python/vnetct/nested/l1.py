"""L1, the host that is a guest: its configuration, its initramfs (QEMU and
its libraries, iproute2, L2's kernel and initramfs, /init) and its command
line: TCG, intel-iommu, two igb PFs on TAPs of L0's wire (fds handed to
QEMU), a virtio-serial port whose other end is a unix socket on L0 for the
host agent, and in a saving run a second port into a file on L0 (L2's
snapshot).

L1's /init does every step itself for now and prints a timestamped marker
per step (`NESTED <uptime> <name> ...`); L2's console comes through it
prefixed `L2 `, L2's agent lines prefixed `L2AGENT `. What it does with L2
is set on the kernel command line: `vnetct.l2=save` boots L2 (no primary),
saves it with `migrate` to a file and copies the file to the state port;
`vnetct.l2=restore` loads L2 from /l2/state (appended to the initramfs) and
asks L2's agent for its hello and, once a slave joined a master, its
report."""

from __future__ import annotations

import hashlib
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from vnetct.nested import image_tools, l2
from vnetct.nested.host_profiles import PfPlan, default_plan

QEMU = "/usr/bin/qemu-system-x86_64"
HOST_AGENT_PORT = "org.vnetct.host-agent"
STATE_PORT = "org.vnetct.l2-state"
ROMS = ["bios-256k.bin", "linuxboot_dma.bin", "kvmvapic.bin", "vgabios-stdvga.bin", "efi-virtio.rom",
        "efi-e1000e.rom"]
L1_APPLETS = ("sh", "mount", "ls", "cat", "cut", "echo", "sed", "grep", "readlink", "basename", "poweroff",
              "head", "mkfifo", "wc", "sha256sum")


@dataclass(frozen=True)
class L1Config:
    mem_mib: int = 384
    smp: int = 2
    l2: l2.L2Config = field(default_factory=l2.L2Config)
    pfs: tuple = field(default_factory=lambda: tuple(default_plan()))
    vf_mac: Optional[str] = None  # the VFs' MAC through their PFs; None: the pair's (l2.mac). Another: a fault

    def vf_mac_set(self) -> str:
        return (self.vf_mac or self.l2.mac).lower()

    def source(self) -> PfPlan:
        return next(pf for pf in self.pfs if pf.role == "source")


L1_INIT = r"""#!/bin/sh
export PATH=/bin:/usr/bin
mark() { echo "NESTED $(cut -d' ' -f1 /proc/uptime) $*"; }
fail() { mark failed "$@"; poweroff -f; }
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs dev /dev
mark l1-init
MODE=$(sed -n 's/.*vnetct\.l2=\([a-z]*\).*/\1/p' /proc/cmdline)
# port -> /dev/vportNpM: the host agent's (issue 18, branch l1agent: it starts here and takes over the
# steps below) and, when saving, the one into L0's snapshot file
port() { for p in /sys/class/virtio-ports/*; do [ "$(cat $p/name)" = "$1" ] && echo /dev/$(basename $p); done; }
mark ports host-agent=$(port {host_agent_port}) state=$(port {state_port})
for dev in /sys/bus/pci/drivers/igb/0000*; do
  net=$(ls $dev/net | head -n1)
  mark pf $(basename $dev) $net mac=$(cat $dev/net/$net/address) totalvfs=$(cat $dev/sriov_totalvfs)
done
# ROLE PFNET NUMVFS INDEX MAC: the VF of one migration side, given the pair's MAC through its PF, on vfio-pci
# (iproute2 by its path: busybox sh runs its own ip applet first, which has no "vf")
vf_setup() {
  dev=/sys/class/net/$2/device
  /usr/bin/ip link set "$2" up || fail $1-pf-up
  echo $3 > $dev/sriov_numvfs || fail $1-numvfs
  vf=$(basename "$(readlink $dev/virtfn$4)")
  mark $1-vf-created $vf driver=$(basename "$(readlink /sys/bus/pci/devices/$vf/driver)")
  /usr/bin/ip link set "$2" vf $4 mac $5 || fail $1-vf-mac
  mark $1-vf-mac-set
  mark vf-mac $2 vf=$4 mac=$(/usr/bin/ip link show "$2" | sed -n "s/.*vf $4 .*link\/ether \([0-9a-f:]*\).*/\1/p")
  echo vfio-pci > /sys/bus/pci/devices/$vf/driver_override
  [ -e /sys/bus/pci/devices/$vf/driver ] && echo $vf > /sys/bus/pci/devices/$vf/driver/unbind
  echo $vf > /sys/bus/pci/drivers_probe
  driver=$(basename "$(readlink /sys/bus/pci/devices/$vf/driver)")
  [ "$driver" = vfio-pci ] || fail $1-vfio-bind $vf driver=$driver
  mark $1-vfio-bound $vf group=$(basename "$(readlink /sys/bus/pci/devices/$vf/iommu_group)")
  VF=$vf
}
{vf_setups}
mkfifo /run/agent.in /run/agent.out /run/qmp.in /run/qmp.out /run/said
exec 3<>/run/agent.in 4<>/run/qmp.in 5<>/run/qmp.out 6<>/run/said
qmp() { echo "$1" >&4; }
qmp_wait() {
  while read -r line <&5; do
    case "$line" in
      *'"error"'*|*'"status": "failed"'*|*'"status": "cancelled"'*) fail qmp "$line";;
      *$1*) return 0;;
    esac
  done
  fail qmp closed waiting for "$1"
}
said() { while read -r what <&6; do [ "$what" = "$1" ] && return 0; done; fail "L2's agent relay closed before $1"; }
# L2's agent lines to the console; what L1 waits for to fd 6; a report asked once a new netdev came with a master or one joined a master
while read -r line; do
  echo "L2AGENT $line"
  case "$line" in
    *'"event":"hello"'*|*'"id":1,"ok":true'*) mark l2-agent-hello; echo hello >&6;;
    *'"id":2,"ok":true'*) mark l2-agent-report; echo report >&6;;
    *'"event":"netdev-added"'*'"master":"'*|*'"changes":["master"'*)
      [ -z "$asked" ] && echo '{"id":2,"cmd":"report"}' >&3; asked=1;;
  esac
done < /run/agent.out &
if [ "$MODE" = save ]; then
  mark l2-start
  {l2_save} < /dev/null 2>&1 | sed 's/^/L2 /' &
  qmp_wait '"QMP"'; qmp '{"execute":"qmp_capabilities"}'; qmp_wait '"return"'
  said hello
  qmp '{"execute":"stop"}'; qmp_wait '"return"'
  qmp '{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"events","state":true}]}}'
  qmp_wait '"return"'
  mark l2-save-start
  qmp '{"execute":"migrate","arguments":{"uri":"file:/run/l2-state"}}'
  qmp_wait '"status": "completed"'
  mark l2-saved bytes=$(wc -c < /run/l2-state) sha256=$(sha256sum /run/l2-state | cut -d' ' -f1)
  cat /run/l2-state > $(port {state_port}) || fail state-copy
  mark l2-state-sent
  qmp '{"execute":"quit"}'
  wait
  poweroff -f
elif [ "$MODE" = restore ]; then
  # a state the kernel could not unpack whole (L1's memory full: "Initramfs unpacking failed") is not loaded
  want=$(sed -n 's/.*vnetct\.l2bytes=\([0-9]*\).*/\1/p' /proc/cmdline)
  set -- $(ls -ln /l2/state 2>/dev/null)
  [ -n "$want" ] && [ "$5" = "$want" ] || fail l2-state-incomplete has="${5:-none}" want="$want"
  mark l2-start
  {l2_restore} < /dev/null 2>&1 | sed 's/^/L2 /' &
  qmp_wait '"QMP"'; qmp '{"execute":"qmp_capabilities"}'; qmp_wait '"return"'
  qmp '{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"events","state":true}]}}'
  qmp_wait '"return"'
  mark l2-restore-start
  qmp '{"execute":"migrate-incoming","arguments":{"uri":"file:/l2/state"}}'
  qmp_wait '"status": "completed"'
  mark l2-loaded
  # it was stopped when it was saved, and comes back stopped: run it (QEMU plugs the primary then)
  qmp '{"execute":"cont"}'; qmp_wait '"return"'
  mark l2-restored
  echo '{"id":1,"cmd":"hello"}' >&3
  said hello
  said report
else
  fail "no vnetct.l2=save|restore on the kernel command line"
fi
wait
mark l2-exited
poweroff -f
"""


def render_init(config: L1Config) -> str:
    setups = []
    for pf in config.pfs:
        setups.append(f"vf_setup {pf.role} {pf.netdev} {pf.num_vfs} {pf.vf_index} {config.vf_mac_set()}")
        if pf.role == "source":
            setups.append("SOURCE_VF=$VF")
    return (L1_INIT.replace("{host_agent_port}", HOST_AGENT_PORT).replace("{state_port}", STATE_PORT)
            .replace("{vf_setups}", "\n".join(setups))
            .replace("{l2_save}", l2.shell_words(l2.argv(config.l2, restored=False)))
            .replace("{l2_restore}", l2.shell_words(l2.argv(config.l2, restored=True))))


def library_closure(binary: str) -> List[str]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    return sorted({m.group(1) for m in re.finditer(r"(/\S+)\s+\(0x", out)})


def build_initramfs(l2_kernel: Path, l2_initrd: bytes, init: str) -> bytes:
    """QEMU and its libraries, iproute2 (VF settings through the PF), busybox, the firmware L2's QEMU loads,
    L2's kernel and initramfs, /init."""
    image_tools()
    from cpio_newc import dir_entry, file_entry, symlink_entry, write_newc
    from initramfs_content import check_busybox

    entries = [dir_entry(d) for d in ("bin", "sbin", "proc", "sys", "dev", "tmp", "run", "usr", "usr/bin",
                                      "usr/share", "usr/share/qemu", "l2")]
    entries.append(file_entry("bin/busybox", check_busybox(), 0o755))
    entries += [symlink_entry(f"bin/{applet}", "busybox") for applet in L1_APPLETS]
    entries.append(file_entry("usr/bin/qemu-system-x86_64", Path(QEMU).read_bytes(), 0o755))
    entries.append(file_entry("usr/bin/ip", Path("/usr/bin/ip").read_bytes(), 0o755))
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
    return write_newc(unique)


def state_archive(state: Path) -> bytes:
    """L2's snapshot as a second newc archive (/l2/state), appended to L1's initramfs: the kernel unpacks
    concatenated archives in turn."""
    image_tools()
    from cpio_newc import file_entry, write_newc

    return write_newc([file_entry("l2/state", state.read_bytes())])


def argv(kernel: Path, initrd: Path, config: L1Config, mode: str, tap_fds: List[int], host_agent_socket: Path,
         state_file: Optional[Path], state_bytes: Optional[int] = None) -> List[str]:
    """L1's command line; `tap_fds` are the PFs' TAP queues (inherited by QEMU), in the order of config.pfs;
    restoring, `state_bytes` is the size /l2/state must have in L1."""
    if mode not in ("save", "restore"):
        raise ValueError(f"L1 mode '{mode}': expected save or restore")
    if len(tap_fds) != len(config.pfs):
        raise ValueError(f"{len(config.pfs)} PFs need as many TAP fds, got {len(tap_fds)}")
    words = [QEMU, "-machine", "q35,kernel-irqchip=split", "-accel", "tcg", "-cpu", "max",
             "-m", str(config.mem_mib), "-smp", str(config.smp), "-nodefaults", "-display", "none", "-no-reboot",
             "-device", "intel-iommu,caching-mode=on,intremap=on"]
    for index, (pf, fd) in enumerate(zip(config.pfs, tap_fds)):
        words += ["-device", f"pcie-root-port,id=root{index + 1},chassis={index + 1},slot={index + 1}",
                  "-netdev", f"tap,id={pf.device_id}net,fd={fd}",
                  "-device", f"igb,netdev={pf.device_id}net,bus=root{index + 1},id={pf.device_id},mac={pf.mac}"]
    words += ["-device", "virtio-serial-pci,id=l1ports",
              "-chardev", f"socket,id=hostagent,path={host_agent_socket},server=on,wait=off",
              "-device", f"virtserialport,chardev=hostagent,name={HOST_AGENT_PORT}"]
    if state_file is not None:
        words += ["-chardev", f"file,id=l2state,path={state_file}",
                  "-device", f"virtserialport,chardev=l2state,name={STATE_PORT}"]
    words += ["-kernel", str(kernel), "-initrd", str(initrd),
              "-append", f"console=ttyS0 panic=-1 rdinit=/init intel_iommu=on printk.time=1 loglevel=4 "
                         f"vnetct.l2={mode}" + (f" vnetct.l2bytes={state_bytes}" if state_bytes is not None else ""),
              "-serial", "stdio"]
    return words


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
