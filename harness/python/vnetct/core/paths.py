"""Where things live. Everything is relative to the repository root."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[4]
BUILD = Path(os.environ.get("VNETCT_BUILD_DIR", REPO / "build"))
CACHE = Path(os.environ.get("VNETCT_CACHE_DIR", REPO / ".cache"))
OUT = Path(os.environ.get("VNETCT_OUT_DIR", REPO / "out"))
CASES = REPO / "cases"
# The sanitizer stage's trees (vnetct.cli.sanitizers): ASan+UBSan with the fuzz targets, and TSan.
ASAN_BUILD = Path(os.environ.get("VNETCT_ASAN_BUILD_DIR", REPO / "build-asan"))
TSAN_BUILD = Path(os.environ.get("VNETCT_TSAN_BUILD_DIR", REPO / "build-tsan"))
FUZZ = REPO / "fuzz"
NATIVE_DIR = BUILD / "harness"
AGENT_BINARY = BUILD / "guest_agent" / "vnetct-guest-agent"
IMAGE_CACHE = CACHE / "guest-image"
DEFAULT_QEMU = Path("/usr/bin/qemu-system-x86_64")
