"""The guest's serial log, read with bounded memory: the guest is untrusted
and may write gigabytes to its console. The boot wait scans only what is new
since its last look (at most CHUNK_BYTES a look); tails read only the end.

    scanner = ConsoleScanner(path, pattern); scanner.search() -> match or None
    tail_text(path, max_bytes)                -> the last max_bytes, decoded
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

# What one look at the log reads at most; a console writing faster than this
# per look is scanned over several looks.
CHUNK_BYTES = 1024 * 1024
# What a tail shows at most (the last lines of a boot).
TAIL_BYTES = 64 * 1024
# A match may straddle two looks: this much of the previous look is kept.
OVERLAP_CHARS = 256


def tail_text(path: Path, max_bytes: int = TAIL_BYTES) -> str:
    """The last `max_bytes` of the file (its start cut at a line end when it
    is longer), "" when it cannot be read."""
    try:
        with open(path, "rb") as file:
            file.seek(0, 2)
            size = file.tell()
            file.seek(max(0, size - max_bytes))
            data = file.read(max_bytes)
    except OSError:
        return ""
    if size > max_bytes and b"\n" in data:
        data = data[data.index(b"\n") + 1:]
    return data.decode(errors="replace")


class ConsoleScanner:
    """Finds `pattern` in a growing file, reading each byte once."""

    def __init__(self, path: Path, pattern: re.Pattern):
        self.path = path
        self.pattern = pattern
        self.offset = 0
        self.carry = ""

    def search(self) -> Optional[re.Match]:
        try:
            with open(self.path, "rb") as file:
                file.seek(self.offset)
                data = file.read(CHUNK_BYTES)
        except OSError:
            return None
        self.offset += len(data)
        text = self.carry + data.decode(errors="replace")
        self.carry = text[-OVERLAP_CHARS:]
        return self.pattern.search(text)
