"""What goes into the initramfs: busybox, the agent, /init, the modules; compression.

Checks that busybox and the agent can run without a libc, strips the agent's
debug info, lays out the initramfs entries and compresses the archive with a
method the kernel can unpack. Stdlib only.
"""

from __future__ import annotations

import gzip
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from cpio_newc import CpioEntry, chardev_entry, dir_entry, file_entry, symlink_entry
from image_common import BuildError, run

BUSYBOX = Path("/bin/busybox")
BUSYBOX_PACKAGE = "busybox-static"
GUEST_MODULE_DIR = "lib/modules/vnetct"
AGENT_GUEST_PATH = "usr/bin/vnetct-guest-agent"
APPLETS: Tuple[str, ...] = (
    "sh", "mount", "mknod", "ip", "cat", "ls", "insmod", "dmesg", "sleep", "poweroff",
)
INITRD_NAMES = {"zstd": "initramfs.cpio.zst", "gzip": "initramfs.cpio.gz"}

# The agent runs as a child (not exec'd) so that its exit status can be printed;
# a PID 1 that exits would panic the kernel and the status would be lost.
INIT_SCRIPT = """#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "vnetct-init: starting agent"
/usr/bin/vnetct-guest-agent
status=$?
echo "vnetct-init: agent exited with status $status"
poweroff -f
"""


def elf_interpreter(blob: bytes) -> Optional[str]:
    """The PT_INTERP of an ELF64 executable (None if static or not ELF64)."""
    if blob[:4] != b"\x7fELF" or blob[4] != 2 or blob[5] != 1:
        return None
    e_phoff, = struct.unpack_from("<Q", blob, 0x20)
    e_phentsize, e_phnum = struct.unpack_from("<HH", blob, 0x36)
    for i in range(e_phnum):
        base = e_phoff + i * e_phentsize
        p_type, = struct.unpack_from("<I", blob, base)
        if p_type == 3:  # PT_INTERP
            p_offset, = struct.unpack_from("<Q", blob, base + 8)
            p_filesz, = struct.unpack_from("<Q", blob, base + 0x20)
            return blob[p_offset:p_offset + p_filesz].rstrip(b"\0").decode()
    return None


def check_busybox(path: Path = BUSYBOX) -> bytes:
    if not path.is_file():
        raise BuildError(f"{path} not found: install the Debian package {BUSYBOX_PACKAGE}")
    data = path.read_bytes()
    interp = elf_interpreter(data)
    if interp:
        raise BuildError(f"{path} is dynamically linked ({interp}): install the Debian "
                         f"package {BUSYBOX_PACKAGE} instead of busybox")
    return data


def check_agent(path: Path) -> bytes:
    if not path.is_file():
        raise BuildError(f"agent binary {path} not found (expected a static executable, "
                         f"e.g. build/guest_agent/vnetct-guest-agent)")
    data = path.read_bytes()
    if data[:4] == b"\x7fELF":
        interp = elf_interpreter(data)
        if interp:
            raise BuildError(f"agent binary {path} is dynamically linked ({interp}); "
                             f"the initramfs has no libc: link it statically")
    elif data[:2] == b"#!":
        interp = data[2:].split(b"\n", 1)[0].strip().split()[0].decode(errors="replace")
        if interp not in ("/bin/sh", "/bin/busybox"):
            raise BuildError(f"agent script {path} uses interpreter {interp}; "
                             f"only /bin/sh exists in the initramfs")
    else:
        raise BuildError(f"agent binary {path} is neither an ELF executable nor a #! script")
    return data


def strip_agent(data: bytes, log: Callable[[str], None]) -> Tuple[bytes, str]:
    """Drop debug info from an ELF agent (a debug build is ~5x larger)."""
    if data[:4] != b"\x7fELF":
        return data, "none (script)"
    tool = shutil.which("strip")
    if not tool:
        log("guest image: strip (binutils) not found; agent goes in with its debug info")
        return data, "none (no strip)"
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "in", Path(d) / "out"
        src.write_bytes(data)
        run([tool, "--strip-debug", "-o", str(dst), str(src)])
        return dst.read_bytes(), "strip-debug"


def choose_compression(config: Dict[str, str]) -> str:
    if config.get("CONFIG_RD_ZSTD") == "y" and shutil.which("zstd"):
        return "zstd"
    if config.get("CONFIG_RD_GZIP") == "y":
        return "gzip"
    raise BuildError("kernel config has neither usable CONFIG_RD_ZSTD (with the zstd "
                     "command) nor CONFIG_RD_GZIP=y")


def compress(data: bytes, method: str) -> bytes:
    if method == "gzip":
        return gzip.compress(data, compresslevel=9, mtime=0)
    if method == "zstd":
        # -9: a stripped image is ~2.3 MB in ~0.3 s; -19 saves ~0.4 MB for ~4 s.
        p = subprocess.run(["zstd", "-9", "-T1", "-q", "-c", "--no-check"],
                           input=data, capture_output=True)
        if p.returncode != 0:
            raise BuildError(f"zstd failed: {p.stderr.decode(errors='replace').strip()}")
        return p.stdout
    raise ValueError(method)


def initramfs_entries(busybox: bytes, agent: bytes, modules: Dict[str, bytes],
                      init_text: str = INIT_SCRIPT) -> List[CpioEntry]:
    entries = [
        dir_entry("bin"), dir_entry("sbin"), dir_entry("usr"), dir_entry("usr/bin"),
        dir_entry("usr/sbin"), dir_entry("etc"), dir_entry("proc"), dir_entry("sys"),
        dir_entry("dev"), dir_entry("run"), dir_entry("root", 0o700),
        dir_entry("tmp", 0o1777), dir_entry("lib"), dir_entry("lib/modules"),
        dir_entry(GUEST_MODULE_DIR),
        chardev_entry("dev/console", 5, 1), chardev_entry("dev/null", 1, 3, 0o666),
        file_entry("bin/busybox", busybox, 0o755),
        file_entry("init", init_text.encode(), 0o755),
        file_entry(AGENT_GUEST_PATH, agent, 0o755),
        file_entry(f"{GUEST_MODULE_DIR}/modules.order",
                   "".join(f"{n}\n" for n in modules).encode()),
    ]
    for applet in APPLETS:
        entries.append(symlink_entry(f"bin/{applet}", "busybox"))
    for name, data in modules.items():
        entries.append(file_entry(f"{GUEST_MODULE_DIR}/{name}.ko", data))
    return entries
