"""The nested path's guest kernel (issue 18): a minimal x86-64 kernel built
once from Debian's linux-source-6.12 package, every driver built in (no
modules), one kernel for L1 and L2.

The configuration is `make allnoconfig` with the committed fragment
guest_agent/image/nested/kernel.config as KCONFIG_ALLCONFIG; an option of the
fragment that Kconfig drops (its dependencies unmet) fails the build, naming
it. The result is cached under CACHE/nested-kernel/<key>/ (bzImage, config,
build.json), the key made of the package version and the fragment's digest:
it is rebuilt only when either changes. The unpacked source and the objects
are kept per package version (CACHE/nested-kernel/src-<version>, build-<version>),
so a changed fragment rebuilds only what it touches. Each step says what it
does and how long it took.

    /usr/bin/python3 -m vnetct.setup.nested_kernel [--json]

(with harness/python on PYTHONPATH) builds it or says it is up to date."""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from vnetct.core import paths
from vnetct.setup import bootstrap

SOURCE_PACKAGE = "linux-source-6.12"
SOURCE_TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")
FRAGMENT = paths.REPO / "guest_agent" / "image" / "nested" / "kernel.config"
CACHE_DIR = paths.CACHE / "nested-kernel"
BUILD_JSON = "build.json"
# Only the nested path installs these (kept out of the default set-up's list).
NESTED_PACKAGES: Dict[str, str] = {
    SOURCE_PACKAGE: "the nested path's guest kernel: Debian's 6.12 source (vnetct.setup.nested_kernel)",
    "bc": "kernel build", "bison": "kernel build (Kconfig)", "flex": "kernel build (Kconfig)",
    "libelf-dev": "kernel build (objtool)", "libssl-dev": "kernel build (certificate tools)",
    "cpio": "kernel build", "xz-utils": "unpacks the kernel source", "gcc": "kernel build",
    "make": "kernel build",
}
_OPTION = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


class NestedKernelError(bootstrap.SetupError):
    """The nested kernel could not be built; the message names the step."""


@dataclass(frozen=True)
class NestedKernel:
    bzimage: Path
    config: Path
    key: str
    package_version: str
    build_seconds: float  # of the build that made it (0 if never measured)
    rebuilt: bool


def parse_config(text: str) -> Dict[str, str]:
    """CONFIG_X -> value ("y", "n" for '# CONFIG_X is not set', a string or number as written)."""
    options = {}
    for line in text.splitlines():
        line = line.strip()
        match = _OPTION.match(line)
        if match:
            options[match.group(1)] = match.group(2)
            continue
        match = _UNSET.match(line)
        if match:
            options[match.group(1)] = "n"
    return options


def missing_options(fragment: Dict[str, str], config: Dict[str, str]) -> List[str]:
    """The fragment's options the built configuration does not hold as asked ("CONFIG_X=y (got n)")."""
    return [f"{name}={value} (got {config.get(name, 'n')})" for name, value in sorted(fragment.items())
            if config.get(name, "n") != value]


def cache_key(package_version: str, fragment: bytes) -> str:
    """'<version>-<digest>': the package version (made path-safe) and 16 hex digits over both inputs."""
    digest = hashlib.sha256(package_version.encode() + b"\0" + fragment).hexdigest()[:16]
    return f"{_safe(package_version)}-{digest}"


def package_version() -> Optional[str]:
    return bootstrap.installed_versions([SOURCE_PACKAGE]).get(SOURCE_PACKAGE)


def cached(cache_dir: Path = CACHE_DIR, fragment_path: Path = FRAGMENT) -> Optional[NestedKernel]:
    """The kernel for the installed package and the current fragment, if built; None otherwise."""
    version = package_version()
    if version is None:
        return None
    return _cached(cache_dir / cache_key(version, fragment_path.read_bytes()), version)


def _cached(out: Path, version: str) -> Optional[NestedKernel]:
    try:
        meta = json.loads((out / BUILD_JSON).read_text())
    except (OSError, ValueError):
        return None
    bzimage, config = out / "bzImage", out / "config"
    if not bzimage.is_file() or not config.is_file() or meta.get("bzimage_bytes") != bzimage.stat().st_size:
        return None
    return NestedKernel(bzimage, config, out.name, version, float(meta.get("build_seconds", 0)), rebuilt=False)


def _run(step: str, argv: List[str], log_path: Path, cwd: Optional[Path] = None) -> None:
    with log_path.open("a") as log:
        log.write(f"\n$ {' '.join(argv)}\n")
        log.flush()
        result = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, check=False)
    if result.returncode != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-20:]
        raise NestedKernelError(f"nested kernel: {step} failed (exit {result.returncode}); log: {log_path}\n"
                                + "\n".join(tail))


def _safe(version: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+_-]", "_", version)


def _unpack_source(cache_dir: Path, version: str, log_path: Path, log) -> Path:
    """The source tree of `version` under cache_dir/src-<version> (unpacked once; other versions' source and
    objects removed)."""
    tree = cache_dir / f"src-{_safe(version)}" / "linux-source-6.12"
    done = tree.parent / ".unpacked"
    for other in [*cache_dir.glob("src-*"), *cache_dir.glob("build-*")]:
        if other.name not in (f"src-{_safe(version)}", f"build-{_safe(version)}"):
            shutil.rmtree(other)
    if done.is_file():
        return tree
    if tree.parent.exists():
        shutil.rmtree(tree.parent)
    tree.parent.mkdir(parents=True)
    started = time.monotonic()
    log(f"nested kernel: unpacking {SOURCE_TARBALL} ({SOURCE_PACKAGE} {version})")
    _run("unpacking the source", ["nice", "-n", "19", "tar", "-xJf", str(SOURCE_TARBALL), "-C", str(tree.parent)],
         log_path)
    if not (tree / "Makefile").is_file():
        raise NestedKernelError(f"nested kernel: {SOURCE_TARBALL} did not unpack to {tree}")
    done.write_text(version + "\n")
    log(f"nested kernel: unpacked in {time.monotonic() - started:.1f} s")
    return tree


def ensure_kernel(cache_dir: Path = CACHE_DIR, fragment_path: Path = FRAGMENT, jobs: int = 2,
                  log=bootstrap.say) -> NestedKernel:
    """Build the kernel (or confirm it up to date): packages, source, configuration, bzImage."""
    bootstrap.ensure_extra_packages(NESTED_PACKAGES)
    version = package_version()
    if version is None or not SOURCE_TARBALL.is_file():
        raise NestedKernelError(f"nested kernel: {SOURCE_PACKAGE} is not installed ({SOURCE_TARBALL} missing)")
    fragment_bytes = fragment_path.read_bytes()
    fragment = parse_config(fragment_bytes.decode())
    key = cache_key(version, fragment_bytes)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        out = cache_dir / key
        found = _cached(out, version)
        if found is not None:
            log(f"nested kernel: up to date ({out}, built in {found.build_seconds:.0f} s)")
            return found
        return _build(cache_dir, out, version, fragment_path, fragment, jobs, log)


def _build(cache_dir: Path, out: Path, version: str, fragment_path: Path, fragment: Dict[str, str], jobs: int,
           log) -> NestedKernel:
    log_path = cache_dir / "build.log"
    log_path.write_text("")
    started = time.monotonic()
    log(f"nested kernel: building {out.name} ({SOURCE_PACKAGE} {version}, {fragment_path.name}; log: {log_path})")
    tree = _unpack_source(cache_dir, version, log_path, log)
    objects = cache_dir / f"build-{_safe(version)}"
    log(f"nested kernel: objects in {objects} ({'kept from an earlier build' if objects.exists() else 'new'})")
    objects.mkdir(exist_ok=True)
    make = ["nice", "-n", "19", "make", "-C", str(tree), f"O={objects}", "ARCH=x86_64"]
    step = time.monotonic()
    log("nested kernel: make allnoconfig with the fragment (KCONFIG_ALLCONFIG)")
    _run("configuring", [*make, f"KCONFIG_ALLCONFIG={fragment_path}", "allnoconfig"], log_path)
    dropped = missing_options(fragment, parse_config((objects / ".config").read_text()))
    if dropped:
        raise NestedKernelError(f"nested kernel: Kconfig dropped options of {fragment_path} (dependencies "
                                f"unmet): {', '.join(dropped)}")
    config_s = time.monotonic() - step
    step = time.monotonic()
    log(f"nested kernel: make -j{jobs} bzImage (nice -n 19)")
    _run("building bzImage", [*make, f"-j{jobs}", "bzImage"], log_path)
    make_s = time.monotonic() - step
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    shutil.copyfile(objects / "arch" / "x86" / "boot" / "bzImage", tmp / "bzImage")
    shutil.copyfile(objects / ".config", tmp / "config")
    total_s = time.monotonic() - started
    meta = {"package": SOURCE_PACKAGE, "package_version": version, "fragment": str(fragment_path),
            "fragment_sha256": hashlib.sha256(fragment_path.read_bytes()).hexdigest(),
            "configure_seconds": round(config_s, 1), "make_seconds": round(make_s, 1),
            "build_seconds": round(total_s, 1), "bzimage_bytes": (tmp / "bzImage").stat().st_size,
            "jobs": jobs, "cpus": os.cpu_count()}
    (tmp / BUILD_JSON).write_text(json.dumps(meta, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    log(f"nested kernel: built {out / 'bzImage'} ({meta['bzimage_bytes']} bytes) in {total_s:.1f} s "
        f"(configure {config_s:.1f} s, make {make_s:.1f} s)")
    return NestedKernel(out / "bzImage", out / "config", out.name, version, total_s, rebuilt=True)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print where the kernel is, as JSON")
    parser.add_argument("-j", "--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        kernel = ensure_kernel(jobs=args.jobs)
    except bootstrap.SetupError as error:
        print(f"vnetct: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"bzimage": str(kernel.bzimage), "config": str(kernel.config), "key": kernel.key,
                          "package_version": kernel.package_version, "build_seconds": kernel.build_seconds,
                          "rebuilt": kernel.rebuilt}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
