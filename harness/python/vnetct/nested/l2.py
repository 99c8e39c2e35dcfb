"""L2, the guest inside L1: its initramfs (busybox, the stripped guest agent,
/init) and its QEMU command lines, run by L1's /init.

Two command lines, one machine: the *saver* has no primary (with every driver
built in, virtio-net negotiates STANDBY while L2's kernel boots, and a VF
plugged then would make vfio block the save), the *restored* L2 has the VF of
the source PF as the failover primary (`-device vfio-pci,host=$SOURCE_VF,
failover_pair_id=net0`, hidden until the loaded features say STANDBY) and
`-incoming defer`. Everything else is the same, so the snapshot fits."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import List

from vnetct.nested import image_tools

AGENT_PORT = "org.vnetct.agent"
VF_PLACEHOLDER = "@SOURCE_VF@"  # L1's /init puts the source VF's PCI address here ($SOURCE_VF)
# L2's kernel quiet: each console line costs L2 about 0.1 s under TCG inside TCG; lpj: no delay-loop calibration
L2_APPEND = "loglevel=4 lpj=24451350 tsc=reliable"
L2_APPLETS = ("grep",)

# The agent runs as a child so that L2 stays up when it exits (and says so). The grep blocks on /dev/kmsg until
# the kernel records the primary enslaved: in the snapshot it is waiting there, before any primary exists.
L2_INIT = r"""#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
read -r uptime idle < /proc/uptime
echo "NESTED-L2 $uptime l2-init"
(/usr/bin/vnetct-guest-agent; echo "NESTED-L2 agent-exited status=$?") &
record=$(grep -m1 'failover primary slave' /dev/kmsg)
read -r uptime idle < /proc/uptime
echo "NESTED-L2 $uptime l2-primary-enslaved kmsg=$record"
wait
poweroff -f
"""


@dataclass(frozen=True)
class L2Config:
    mem_mib: int = 96
    tb_mib: int = 32          # L2's QEMU translation buffer (L1's memory is small)
    append: str = L2_APPEND
    mac: str = "52:54:00:6f:55:cc"  # the failover pair's MAC (the VF's, set through the PF)


def build_initramfs(agent_binary: Path, log=print) -> bytes:
    """busybox, the stripped agent and /init; no modules (every driver is built in); uncompressed: unpacking
    costs L2 nothing to decompress."""
    image_tools()
    from cpio_newc import symlink_entry, write_newc
    from initramfs_content import check_agent, check_busybox, initramfs_entries, strip_agent

    agent, _ = strip_agent(check_agent(agent_binary), log)
    entries = initramfs_entries(check_busybox(), agent, {}, init_text=L2_INIT)
    return write_newc(entries + [symlink_entry(f"bin/{applet}", "busybox") for applet in L2_APPLETS])


def argv(config: L2Config, restored: bool) -> List[str]:
    """L2's QEMU command line inside L1 (paths are L1's): the saver's, or the restored one's."""
    words = ["/usr/bin/qemu-system-x86_64", "-L", "/usr/share/qemu", "-machine", "q35",
             "-accel", f"tcg,tb-size={config.tb_mib}", "-cpu", "max", "-m", str(config.mem_mib), "-smp", "1",
             "-nodefaults", "-display", "none", "-no-reboot", "-serial", "stdio",
             "-kernel", "/l2/bzImage", "-initrd", "/l2/initrd",
             "-append", f"console=ttyS0 panic=-1 printk.time=1 {config.append}",
             "-device", "pcie-root-port,id=root1,chassis=1,slot=1",
             "-device", "pcie-root-port,id=root2,chassis=2,slot=2",
             "-device", "virtio-serial-pci,id=agentbus", "-chardev", "pipe,id=agent,path=/run/agent",
             "-device", f"virtserialport,chardev=agent,name={AGENT_PORT}",
             "-qmp", "pipe:/run/qmp",
             "-netdev", "hubport,id=hn0,hubid=0",
             "-device", f"virtio-net-pci,netdev=hn0,id=net0,mac={config.mac},bus=root1,failover=on"]
    if restored:
        words += ["-device", f"vfio-pci,host={VF_PLACEHOLDER},id=hostdev0,bus=root2,failover_pair_id=net0",
                  "-incoming", "defer"]
    return words


def shell_words(words: List[str]) -> str:
    """`words` for L1's /init: each quoted, the VF placeholder left to the shell ($SOURCE_VF)."""
    text = " ".join(shlex.quote(word) for word in words)
    if f"'{VF_PLACEHOLDER}" in text or "$" in text.replace(VF_PLACEHOLDER, ""):
        raise ValueError(f"L2's command line quotes the VF placeholder or holds a '$': {text}")
    return text.replace(VF_PLACEHOLDER, "$SOURCE_VF")
