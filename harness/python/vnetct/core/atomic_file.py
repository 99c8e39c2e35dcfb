"""Files a reader must never see half-written, even after a crash or a power
cut: results.json, junit.xml, the reports, the expectations files. Written to
a temporary file beside the target (unique per writer), fsync'd, renamed over
the target, and the directory fsync'd, so the name always points at a whole
file, the old one or the new one. The C++ twin is vnetct/common/atomic_file.hpp
(the SR-IOV undo journal)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Union


def write_atomically(path: Union[str, Path], content: Union[str, bytes], encoding: str = "utf-8") -> Path:
    """Replaces `path` by `content` in one step; returns the path."""
    path = Path(path)
    data = content.encode(encoding) if isinstance(content, str) else content
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it 0600; the files are read by whoever reads the results
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    _sync_directory(path.parent)
    return path


def _sync_directory(directory: Path) -> None:
    try:
        handle = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass  # some file systems refuse fsync on a directory; the rename itself stands
    finally:
        os.close(handle)
