#!/usr/bin/python3
"""Build the vnetct guest image: a Debian 6.12 kernel plus a tiny initramfs.

The initramfs holds static busybox, the failover-related kernel modules (not
loaded: the guest agent loads them when the host asks, so the harness can watch
the moment of negotiation) and the guest agent, started by a short /init.

Stdlib only; runs on /usr/bin/python3. Importable:

    build_image(cache_dir: Path, agent_binary: Path, log=print) -> dict

and runnable:

    /usr/bin/python3 guest_agent/image/build_image.py --cache DIR --agent PATH

Cache layout (DIR):
    debs/                   the downloaded linux-image .deb
    kernel-<version>/       the unpacked package (dpkg-deb -x), done once
    vmlinuz                 the kernel
    initramfs.cpio.zst      (or initramfs.cpio.gz when zstd is not usable)
    image.json              what was built from what (see build_image)
"""

from __future__ import annotations

import argparse
import fcntl
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

META_PACKAGE = "linux-image-6.12-amd64"
KERNEL_PACKAGE_RE = re.compile(r"^linux-image-(6\.12\.[^ ]*-amd64)$")
BUSYBOX = Path("/bin/busybox")
BUSYBOX_PACKAGE = "busybox-static"
# Load order: each module's depends= must name only modules earlier in the list.
MODULES: Tuple[str, ...] = (
    "failover", "net_failover", "virtio_net", "dca", "i2c_algo_bit", "igb", "e1000e",
)
GUEST_MODULE_DIR = "lib/modules/vnetct"
AGENT_GUEST_PATH = "usr/bin/vnetct-guest-agent"
APPLETS: Tuple[str, ...] = (
    "sh", "mount", "mknod", "ip", "cat", "ls", "insmod", "dmesg", "sleep", "poweroff",
)
IMAGE_JSON = "image.json"
KERNEL_NAME = "vmlinuz"
IMAGE_FORMAT = 1  # bump when image.json's meaning changes

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


class BuildError(Exception):
    """A one-line, user-facing reason why the image cannot be built."""


# --------------------------------------------------------------------------
# newc cpio writer
# --------------------------------------------------------------------------

S_IFDIR = 0o040000
S_IFREG = 0o100000
S_IFLNK = 0o120000
S_IFCHR = 0o020000


class CpioEntry:
    __slots__ = ("path", "mode", "data", "rdevmajor", "rdevminor")

    def __init__(self, path: str, mode: int, data: bytes = b"",
                 rdevmajor: int = 0, rdevminor: int = 0):
        path = path.strip("/")
        if not path or path.startswith("..") or "/../" in f"/{path}/":
            raise ValueError(f"bad cpio path {path!r}")
        self.path = path
        self.mode = mode
        self.data = data
        self.rdevmajor = rdevmajor
        self.rdevminor = rdevminor


def dir_entry(path: str, perm: int = 0o755) -> CpioEntry:
    return CpioEntry(path, S_IFDIR | perm)


def file_entry(path: str, data: bytes, perm: int = 0o644) -> CpioEntry:
    return CpioEntry(path, S_IFREG | perm, data)


def symlink_entry(path: str, target: str) -> CpioEntry:
    return CpioEntry(path, S_IFLNK | 0o777, target.encode())


def chardev_entry(path: str, major: int, minor: int, perm: int = 0o600) -> CpioEntry:
    return CpioEntry(path, S_IFCHR | perm, b"", major, minor)


def _pad4(n: int) -> bytes:
    return b"\0" * ((4 - n % 4) % 4)


def _newc_record(ino: int, mode: int, nlink: int, data: bytes, name: str,
                 rdevmajor: int = 0, rdevminor: int = 0) -> bytes:
    name_b = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0,
              rdevmajor, rdevminor, len(name_b), 0)
    header = b"070701" + b"".join(b"%08X" % f for f in fields)
    out = header + name_b
    out += _pad4(len(out))
    out += data + _pad4(len(data))
    return out


def write_newc(entries: Iterable[CpioEntry]) -> bytes:
    """Serialise entries as a deterministic newc ("070701") archive.

    Entries are sorted by path (a parent sorts before its children), all
    mtimes/uids/gids are 0, inode numbers are assigned in order. Missing parent
    directories are added. Duplicate paths are an error.
    """
    by_path: Dict[str, CpioEntry] = {}
    for e in entries:
        if e.path in by_path:
            raise ValueError(f"duplicate cpio path {e.path!r}")
        by_path[e.path] = e
    for p in list(by_path):
        parts = p.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            if parent not in by_path:
                by_path[parent] = dir_entry(parent)
            elif by_path[parent].mode & 0o170000 != S_IFDIR:
                raise ValueError(f"cpio path {p!r} is below non-directory {parent!r}")
    out = bytearray()
    for ino, path in enumerate(sorted(by_path), start=1):
        e = by_path[path]
        nlink = 2 if e.mode & 0o170000 == S_IFDIR else 1
        out += _newc_record(ino, e.mode, nlink, e.data, path, e.rdevmajor, e.rdevminor)
    out += _newc_record(0, 0, 1, b"", "TRAILER!!!")
    # pad the archive to a 512-byte multiple like cpio(1) does
    out += b"\0" * ((512 - len(out) % 512) % 512)
    return bytes(out)


def read_newc(blob: bytes) -> List[Tuple[str, int, bytes]]:
    """Parse a newc archive back into (path, mode, data); for tests and checks."""
    res = []
    off = 0
    while True:
        if blob[off:off + 6] != b"070701":
            raise ValueError(f"bad newc magic at offset {off}")
        f = [int(blob[off + 6 + 8 * i: off + 14 + 8 * i], 16) for i in range(13)]
        mode, filesize, namesize = f[1], f[6], f[11]
        name_start = off + 110
        name = blob[name_start:name_start + namesize - 1].decode()
        off = name_start + namesize
        off += (4 - off % 4) % 4
        data = blob[off:off + filesize]
        off += filesize
        off += (4 - off % 4) % 4
        if name == "TRAILER!!!":
            return res
        res.append((name, mode, data))


# --------------------------------------------------------------------------
# ELF helpers: .modinfo and "is it static"
# --------------------------------------------------------------------------

def _elf64_sections(blob: bytes) -> Optional[Dict[str, bytes]]:
    if blob[:4] != b"\x7fELF" or blob[4] != 2 or blob[5] != 1:
        return None  # not a 64-bit little-endian ELF
    try:
        e_shoff, = struct.unpack_from("<Q", blob, 0x28)
        e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", blob, 0x3A)
        if e_shoff == 0 or e_shnum == 0:
            return None
        hdrs = []
        for i in range(e_shnum):
            base = e_shoff + i * e_shentsize
            sh_name, sh_type = struct.unpack_from("<II", blob, base)
            sh_offset, sh_size = struct.unpack_from("<QQ", blob, base + 0x18)
            hdrs.append((sh_name, sh_type, sh_offset, sh_size))
        strtab = hdrs[e_shstrndx]
        names = blob[strtab[2]:strtab[2] + strtab[3]]
        out = {}
        for sh_name, sh_type, sh_offset, sh_size in hdrs:
            end = names.find(b"\0", sh_name)
            name = names[sh_name:end].decode(errors="replace")
            if sh_type != 8:  # SHT_NOBITS has no bytes in the file
                out[name] = blob[sh_offset:sh_offset + sh_size]
        return out
    except (struct.error, IndexError):
        return None


def parse_modinfo(blob: bytes) -> Dict[str, List[str]]:
    """key -> values from a module's .modinfo (NUL-separated key=value strings).

    Uses the ELF .modinfo section when the blob is an ELF64 object; otherwise
    scans the whole blob (enough for synthetic test data).
    """
    sections = _elf64_sections(blob)
    area = sections.get(".modinfo", b"") if sections else blob
    info: Dict[str, List[str]] = {}
    for item in area.split(b"\0"):
        m = re.fullmatch(rb"([A-Za-z_][A-Za-z0-9_.]*)=(.*)", item, re.S)
        if m:
            info.setdefault(m.group(1).decode(), []).append(
                m.group(2).decode(errors="replace"))
    return info


def modinfo_depends(blob: bytes) -> List[str]:
    """Module names from depends= (normalised: '-' -> '_'), empty if none."""
    deps: List[str] = []
    for value in parse_modinfo(blob).get("depends", []):
        deps += [d.strip().replace("-", "_") for d in value.split(",") if d.strip()]
    return deps


def check_module_order(depends: Dict[str, List[str]], order: Sequence[str]) -> None:
    """Every dependency must be in `order`, before the module that needs it."""
    seen = set()
    for name in order:
        for dep in depends.get(name, []):
            if dep not in order:
                raise BuildError(
                    f"module {name} depends on {dep}, which is not in the image's "
                    f"module list ({' '.join(order)})")
            if dep not in seen:
                raise BuildError(
                    f"module {name} depends on {dep}, which is loaded after it; "
                    f"fix the load order ({' '.join(order)})")
        seen.add(name)


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


# --------------------------------------------------------------------------
# cache digest
# --------------------------------------------------------------------------

def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def inputs_digest(inputs: Dict[str, str]) -> str:
    """One digest over named input digests (order-independent)."""
    h = hashlib.sha256()
    for name in sorted(inputs):
        h.update(name.encode() + b"\0" + inputs[name].encode() + b"\n")
    return h.hexdigest()


def changed_inputs(old: Dict[str, str], new: Dict[str, str]) -> List[str]:
    names = sorted(set(old) | set(new))
    return [n for n in names if old.get(n) != new.get(n)]


# --------------------------------------------------------------------------
# steps
# --------------------------------------------------------------------------

def _run(argv: Sequence[str], cwd: Optional[Path] = None) -> str:
    try:
        p = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise BuildError(f"command {argv[0]} not found (needed for: {' '.join(argv)})")
    if p.returncode != 0:
        err = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise BuildError(f"{' '.join(argv)} failed (exit {p.returncode}): {err}")
    return p.stdout


def _version_key(v: str):
    return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", v)]


def resolve_kernel_package() -> Tuple[str, str, str]:
    """(package, package version, kernel version) of the newest 6.12 image."""
    out = _run(["apt-cache", "depends", META_PACKAGE])
    candidates = []
    for line in out.splitlines():
        m = re.match(r"\s*\|?Depends:\s*(\S+)", line)
        if m and KERNEL_PACKAGE_RE.match(m.group(1)):
            candidates.append(m.group(1))
    if not candidates:
        raise BuildError(
            f"apt-cache depends {META_PACKAGE} names no linux-image-6.12.*-amd64 "
            f"package (is bookworm-backports in apt sources and apt-get update done?)")
    pkg = max(candidates, key=_version_key)
    kver = KERNEL_PACKAGE_RE.match(pkg).group(1)
    pol = _run(["apt-cache", "policy", pkg])
    m = re.search(r"Candidate:\s*(\S+)", pol)
    if not m or m.group(1) == "(none)":
        raise BuildError(f"package {pkg} has no installable candidate in apt")
    return pkg, m.group(1), kver


def _deb_version(deb: Path) -> str:
    return _run(["dpkg-deb", "-f", str(deb), "Version"]).strip()


def fetch_kernel(cache: Path, pkg: str, pkg_version: str, kver: str,
                 log: Callable[[str], None]) -> Path:
    """Download (if needed) and unpack (once) the kernel package."""
    kdir = cache / f"kernel-{kver}"
    marker = kdir / ".vnetct-unpacked"
    if marker.is_file() and marker.read_text().strip() == f"{pkg} {pkg_version}":
        return kdir
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    deb = None
    for cand in sorted(debs.glob(f"{pkg}_*.deb")):
        try:
            if _deb_version(cand) == pkg_version:
                deb = cand
        except BuildError:
            cand.unlink()  # a truncated download
    if deb is None:
        log(f"guest image: downloading {pkg} {pkg_version}")
        _run(["apt-get", "download", f"{pkg}={pkg_version}"], cwd=debs)
        for cand in sorted(debs.glob(f"{pkg}_*.deb")):
            if _deb_version(cand) == pkg_version:
                deb = cand
        if deb is None:
            raise BuildError(f"apt-get download {pkg}={pkg_version} left no .deb in {debs}")
    log(f"guest image: unpacking {deb.name} into {kdir.name}")
    tmp = cache / f".kernel-{kver}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    _run(["dpkg-deb", "-x", str(deb), str(tmp)])
    if kdir.exists():
        shutil.rmtree(kdir)
    tmp.rename(kdir)
    marker.write_text(f"{pkg} {pkg_version}\n")
    return kdir


def find_modules(kdir: Path, kver: str, names: Sequence[str]) -> Dict[str, Path]:
    moddir = kdir / "lib" / "modules" / kver / "kernel"
    if not moddir.is_dir():
        raise BuildError(f"{moddir} missing: the kernel package has no module tree for {kver}")
    index: Dict[str, List[Path]] = {}
    for p in moddir.rglob("*.ko*"):
        base = p.name.split(".ko")[0].replace("-", "_")
        index.setdefault(base, []).append(p)
    found = {}
    for n in names:
        hits = index.get(n.replace("-", "_"), [])
        if not hits:
            raise BuildError(f"module {n} not found under {moddir} (expected {n}.ko.xz)")
        if len(hits) > 1:
            raise BuildError(f"module {n} is ambiguous under {moddir}: "
                             + ", ".join(str(h.relative_to(moddir)) for h in hits))
        found[n] = hits[0]
    return found


def read_module(path: Path) -> bytes:
    raw = path.read_bytes()
    if path.name.endswith(".ko.xz"):
        try:
            return lzma.decompress(raw)
        except lzma.LZMAError as e:
            raise BuildError(f"{path}: cannot decompress xz module ({e})")
    if path.name.endswith(".ko"):
        return raw
    raise BuildError(f"{path}: unsupported module compression (expected .ko or .ko.xz)")


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
        _run([tool, "--strip-debug", "-o", str(dst), str(src)])
        return dst.read_bytes(), "strip-debug"


def kernel_config(kdir: Path, kver: str) -> Dict[str, str]:
    cfg = kdir / "boot" / f"config-{kver}"
    if not cfg.is_file():
        raise BuildError(f"{cfg} missing from the kernel package")
    out = {}
    for line in cfg.read_text().splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
    return out


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


INITRD_NAMES = {"zstd": "initramfs.cpio.zst", "gzip": "initramfs.cpio.gz"}


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


def _load_image_json(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def build_image(cache_dir: Path, agent_binary: Path, log=print) -> dict:
    """Build (or confirm up to date) the guest kernel + initramfs in cache_dir.

    Returns the image.json content plus "rebuilt": bool. Raises BuildError with
    a one-line message on any failure.
    """
    cache = Path(cache_dir).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    # one builder per cache at a time (parallel test workers share the cache)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_locked(cache, Path(agent_binary), log)


def _build_locked(cache: Path, agent_binary: Path, log) -> dict:
    t0 = time.monotonic()

    log(f"guest image: [1/5] resolving kernel via {META_PACKAGE}")
    pkg, pkg_version, kver = resolve_kernel_package()
    kdir = fetch_kernel(cache, pkg, pkg_version, kver, log)
    vmlinuz_src = kdir / "boot" / f"vmlinuz-{kver}"
    if not vmlinuz_src.is_file():
        raise BuildError(f"{vmlinuz_src} missing from package {pkg}")
    config = kernel_config(kdir, kver)
    method = choose_compression(config)

    log(f"guest image: [2/5] checking busybox ({BUSYBOX}, package {BUSYBOX_PACKAGE})")
    busybox = check_busybox()
    agent = check_agent(agent_binary)

    log(f"guest image: [3/5] collecting modules: {' '.join(MODULES)}")
    paths = find_modules(kdir, kver, MODULES)
    # The digest uses the packaged (compressed) bytes: decompressing is only
    # needed when rebuilding.
    module_files = {n: paths[n].read_bytes() for n in MODULES}

    inputs = {
        "kernel_package": sha256(f"{pkg} {pkg_version}".encode()),
        "vmlinuz": sha256(vmlinuz_src.read_bytes()),
        "busybox": sha256(busybox),
        "agent": sha256(agent),
        "init": sha256(INIT_SCRIPT.encode()),
        "builder": sha256(Path(__file__).read_bytes()),
        "compression": sha256(method.encode()),
        "strip_tool": sha256(str(bool(shutil.which("strip"))).encode()),
    }
    for n in MODULES:
        inputs[f"module:{n}"] = sha256(module_files[n])
    digest = inputs_digest(inputs)

    initrd = cache / INITRD_NAMES[method]
    kernel_out = cache / KERNEL_NAME
    meta_path = cache / IMAGE_JSON
    old = _load_image_json(meta_path)
    if (old and old.get("inputs_hash") == digest and kernel_out.is_file()
            and initrd.is_file() and old.get("sizes", {}).get("initramfs")
            == initrd.stat().st_size):
        log(f"guest image: up to date ({digest[:12]})")
        return dict(old, rebuilt=False)
    if not old:
        reason = "no previous image.json"
    elif old.get("inputs_hash") != digest:
        reason = "changed: " + ", ".join(changed_inputs(old.get("inputs", {}), inputs))
    else:
        reason = "output files missing or altered"
    log(f"guest image: rebuilding ({reason})")

    modules = {n: read_module(paths[n]) for n in MODULES}
    check_module_order({n: modinfo_depends(b) for n, b in modules.items()}, MODULES)
    agent_in_image, strip_mode = strip_agent(agent, log)
    log(f"guest image: [4/5] writing initramfs ({method}; agent {len(agent)} -> "
        f"{len(agent_in_image)} bytes, {strip_mode})")
    archive = write_newc(initramfs_entries(busybox, agent_in_image, modules))
    packed = compress(archive, method)
    tmp = initrd.with_suffix(initrd.suffix + ".tmp")
    tmp.write_bytes(packed)
    tmp.rename(initrd)
    for other in INITRD_NAMES.values():
        if other != initrd.name and (cache / other).exists():
            (cache / other).unlink()
    shutil.copyfile(vmlinuz_src, kernel_out)

    log(f"guest image: [5/5] writing {IMAGE_JSON}")
    meta = {
        "format": IMAGE_FORMAT,
        "kernel_version": kver,
        "kernel_package": pkg,
        "kernel_package_version": pkg_version,
        "inputs_hash": digest,
        "inputs": inputs,
        "compression": method,
        "modules": list(MODULES),
        "agent_source": str(agent_binary.resolve()),
        "agent_strip": strip_mode,
        "guest_module_dir": "/" + GUEST_MODULE_DIR,
        "guest_agent_path": "/" + AGENT_GUEST_PATH,
        "paths": {"kernel": str(kernel_out), "initramfs": str(initrd),
                  "kernel_tree": str(kdir)},
        "sizes": {"kernel": kernel_out.stat().st_size, "initramfs": len(packed),
                  "agent": len(agent), "agent_in_image": len(agent_in_image),
                  "initramfs_uncompressed": len(archive)},
        "build_seconds": round(time.monotonic() - t0, 3),
    }
    tmpj = meta_path.with_suffix(".json.tmp")
    tmpj.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    tmpj.rename(meta_path)
    log(f"guest image: built {initrd.name} ({len(packed)} bytes) for {kver} "
        f"in {meta['build_seconds']:.1f} s ({digest[:12]})")
    return dict(meta, rebuilt=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", required=True, type=Path, help="cache directory")
    ap.add_argument("--agent", required=True, type=Path, help="static guest agent binary")
    ap.add_argument("--json", action="store_true", help="print the image metadata as JSON")
    args = ap.parse_args(argv)
    try:
        # with --json, stdout carries only the JSON document
        log = (lambda m: print(m, file=sys.stderr)) if args.json else print
        meta = build_image(args.cache, args.agent, log=log)
    except BuildError as e:
        print(f"guest image: error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(meta, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
