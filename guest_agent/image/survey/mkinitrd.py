#!/usr/bin/python3
"""Throwaway survey initramfs: the image builder's layout with a survey /init.

usage: mkinitrd.py CACHE_DIR INIT_SCRIPT OUT.cpio.zst
CACHE_DIR is a build_image.py cache (kernel already unpacked there).
"""
import json, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import cpio_newc
import initramfs_content as content
import kernel_modules as km

cache, init, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
meta = json.loads((cache / "image.json").read_text())
kv = meta["kernel_version"]
paths = km.find_modules(cache / f"kernel-{kv}", kv, km.MODULES)
mods = {n: km.read_module(paths[n]) for n in km.MODULES}
agent = b"#!/bin/sh\necho 'survey: stand-in agent'\n"
arc = cpio_newc.write_newc(content.initramfs_entries(content.check_busybox(), agent, mods,
                                                     init.read_text()))
z = content.compress(arc, "zstd")
out.write_bytes(z)
print(f"{out}: {len(z)} bytes ({len(arc)} uncompressed)")
