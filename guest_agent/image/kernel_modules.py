"""The guest kernel and its modules: the Debian package, .modinfo, load order.

Resolves and fetches (apt-get download, dpkg-deb -x) the newest 6.12 kernel
package, finds the failover-related modules in it, decompresses them, reads
their ELF .modinfo depends= and checks the load order. Stdlib only.
"""

from __future__ import annotations

import lzma
import re
import shutil
import struct
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from image_common import BuildError, run

META_PACKAGE = "linux-image-6.12-amd64"
KERNEL_PACKAGE_RE = re.compile(r"^linux-image-(6\.12\.[^ ]*-amd64)$")
# Load order: each module's depends= must name only modules earlier in the list.
MODULES: Tuple[str, ...] = (
    "failover", "net_failover", "virtio_net", "dca", "i2c_algo_bit", "igb", "e1000e",
    # SR-IOV VF drivers, for a real VF as the primary (--profile vf) and the
    # emulated igb's VF (igbvf): Intel E810/X710 (iavf), 82599/X540 (ixgbevf),
    # 82576/I350 (igbvf), Mellanox ConnectX-4 and later (mlx5_core), Broadcom NetXtreme (bnxt_en).
    "libeth", "libie", "iavf", "ixgbevf", "igbvf", "pci_hyperv_intf", "mlxfw", "mlx5_core", "bnxt_en",
)


# --------------------------------------------------------------------------
# ELF .modinfo and load order
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
    """Every dependency must be in `order`, before the module that needs it
    (names compare as the kernel compares them: '-' and '_' are the same)."""
    def same(name: str) -> str:
        return name.replace("-", "_")
    seen = set()
    listed = {same(n) for n in order}
    for name in order:
        for dep in depends.get(name, []):
            if same(dep) not in listed:
                raise BuildError(
                    f"module {name} depends on {dep}, which is not in the image's "
                    f"module list ({' '.join(order)})")
            if same(dep) not in seen:
                raise BuildError(
                    f"module {name} depends on {dep}, which is loaded after it; "
                    f"fix the load order ({' '.join(order)})")
        seen.add(same(name))


# --------------------------------------------------------------------------
# kernel package
# --------------------------------------------------------------------------

def _version_key(v: str):
    return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", v)]


def resolve_kernel_package() -> Tuple[str, str, str]:
    """(package, package version, kernel version) of the newest 6.12 image."""
    out = run(["apt-cache", "depends", META_PACKAGE])
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
    pol = run(["apt-cache", "policy", pkg])
    m = re.search(r"Candidate:\s*(\S+)", pol)
    if not m or m.group(1) == "(none)":
        raise BuildError(f"package {pkg} has no installable candidate in apt")
    return pkg, m.group(1), kver


def _deb_version(deb: Path) -> str:
    return run(["dpkg-deb", "-f", str(deb), "Version"]).strip()


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
        run(["apt-get", "download", f"{pkg}={pkg_version}"], cwd=debs)
        for cand in sorted(debs.glob(f"{pkg}_*.deb")):
            if _deb_version(cand) == pkg_version:
                deb = cand
        if deb is None:
            raise BuildError(f"apt-get download {pkg}={pkg_version} left no .deb in {debs}")
    log(f"guest image: unpacking {deb.name} into {kdir.name}")
    tmp = cache / f".kernel-{kver}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    run(["dpkg-deb", "-x", str(deb), str(tmp)])
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
