"""What every module of the guest image builder shares: BuildError and run().

BuildError lives here, not in build_image.py, so that there is one class even
when build_image.py runs as a script (as __main__, it is not the module that
`import build_image` would load).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Optional, Sequence


class BuildError(Exception):
    """A one-line, user-facing reason why the image cannot be built."""


def run(argv: Sequence[str], cwd: Optional[Path] = None) -> str:
    """Run a command, return its stdout; BuildError naming it if it fails."""
    try:
        p = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise BuildError(f"command {argv[0]} not found (needed for: {' '.join(argv)})")
    if p.returncode != 0:
        err = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise BuildError(f"{' '.join(argv)} failed (exit {p.returncode}): {err}")
    return p.stdout
