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

The builder's modules, all in this folder (imported by plain name):
    build_image.py          entry point: cache digest, build steps, CLI
    image_common.py         BuildError, run()
    cpio_newc.py            the newc archive writer (and reader)
    kernel_modules.py       kernel package resolve/fetch, modules, .modinfo depends
    initramfs_content.py    busybox/agent checks, /init, layout, compression
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

# Sibling modules by plain name: this file runs as a script and is imported as
# `import build_image` with this folder on sys.path (harness bootstrap).
import cpio_newc
import image_common
import initramfs_content
import kernel_modules
from cpio_newc import write_newc
from image_common import BuildError
from initramfs_content import (AGENT_GUEST_PATH, BUSYBOX, BUSYBOX_PACKAGE,
                               GUEST_MODULE_DIR, INIT_SCRIPT, INITRD_NAMES, check_agent,
                               check_busybox, choose_compression, compress,
                               initramfs_entries, strip_agent)
from kernel_modules import (META_PACKAGE, MODULES, check_module_order, fetch_kernel,
                            find_modules, kernel_config, modinfo_depends, read_module,
                            resolve_kernel_package)

IMAGE_JSON = "image.json"
KERNEL_NAME = "vmlinuz"
IMAGE_FORMAT = 1  # bump when image.json's meaning changes

HERE = Path(__file__).resolve().parent
# Every module of the builder: each one's source is an input of the cache
# digest, so editing any of them rebuilds the image. test_build_image.py checks
# that this lists every non-test .py file of this folder.
BUILDER_MODULES = (sys.modules[__name__], cpio_newc, image_common, initramfs_content,
                   kernel_modules)


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


def builder_sources() -> Dict[str, Path]:
    """File name -> path of every builder module, all from this folder."""
    out = {}
    for module in BUILDER_MODULES:
        path = Path(module.__file__).resolve()
        if path.parent != HERE:
            # another module of the same name was imported first
            raise BuildError(f"builder module {module.__name__} was loaded from {path}, "
                             f"not from {HERE}")
        out[path.name] = path
    return out


def builder_inputs() -> Dict[str, str]:
    """One input per builder module: "builder:<file>" -> sha256 of its source."""
    return {f"builder:{name}": sha256(path.read_bytes())
            for name, path in sorted(builder_sources().items())}


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
        "compression": sha256(method.encode()),
        "strip_tool": sha256(str(bool(shutil.which("strip"))).encode()),
    }
    inputs.update(builder_inputs())
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
