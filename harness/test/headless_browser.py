"""Debian's chromium, headless, for the report tests (test_report.py,
test_matrix.py): load a page with --dump-dom, take a screenshot, and see the
console messages the page caused."""

import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                                             "(./vnetct test installs it)")


def chromium(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--no-first-run", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
                           *args, url], capture_output=True, text=True, timeout=60, check=False)


def console_lines(stderr: str):
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]
