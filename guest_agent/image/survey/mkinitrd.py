#!/usr/bin/python3
"""Throwaway survey initramfs: the image builder's layout with a survey /init.

usage: mkinitrd.py CACHE_DIR INIT_SCRIPT OUT.cpio.zst
CACHE_DIR is a build_image.py cache (kernel already unpacked there).
"""
import json, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import build_image as b

cache, init, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
meta = json.loads((cache / "image.json").read_text())
kv = meta["kernel_version"]
paths = b.find_modules(cache / f"kernel-{kv}", kv, b.MODULES)
mods = {n: b.read_module(paths[n]) for n in b.MODULES}
agent = b"#!/bin/sh\necho 'survey: stand-in agent'\n"
arc = b.write_newc(b.initramfs_entries(b.check_busybox(), agent, mods, init.read_text()))
z = b.compress(arc, "zstd")
out.write_bytes(z)
print(f"{out}: {len(z)} bytes ({len(arc)} uncompressed)")
