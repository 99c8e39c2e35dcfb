"""A deterministic newc ("070701") cpio writer, and a reader for checks and tests.

Stdlib only. This is the format the Linux kernel unpacks as an initramfs.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Tuple

S_IFDIR = 0o040000
S_IFREG = 0o100000
S_IFLNK = 0o120000
S_IFCHR = 0o020000


class CpioEntry:
    __slots__ = ("path", "mode", "data", "rdevmajor", "rdevminor")

    def __init__(self, path: str, mode: int, data: bytes = b"",
                 rdevmajor: int = 0, rdevminor: int = 0):
        path = path.strip("/")
        if not path or path.startswith("..") or "/../" in f"/{path}/":
            raise ValueError(f"bad cpio path {path!r}")
        self.path = path
        self.mode = mode
        self.data = data
        self.rdevmajor = rdevmajor
        self.rdevminor = rdevminor


def dir_entry(path: str, perm: int = 0o755) -> CpioEntry:
    return CpioEntry(path, S_IFDIR | perm)


def file_entry(path: str, data: bytes, perm: int = 0o644) -> CpioEntry:
    return CpioEntry(path, S_IFREG | perm, data)


def symlink_entry(path: str, target: str) -> CpioEntry:
    return CpioEntry(path, S_IFLNK | 0o777, target.encode())


def chardev_entry(path: str, major: int, minor: int, perm: int = 0o600) -> CpioEntry:
    return CpioEntry(path, S_IFCHR | perm, b"", major, minor)


def _pad4(n: int) -> bytes:
    return b"\0" * ((4 - n % 4) % 4)


def _newc_record(ino: int, mode: int, nlink: int, data: bytes, name: str,
                 rdevmajor: int = 0, rdevminor: int = 0) -> bytes:
    name_b = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0,
              rdevmajor, rdevminor, len(name_b), 0)
    header = b"070701" + b"".join(b"%08X" % f for f in fields)
    out = header + name_b
    out += _pad4(len(out))
    out += data + _pad4(len(data))
    return out


def write_newc(entries: Iterable[CpioEntry]) -> bytes:
    """Serialise entries as a deterministic newc ("070701") archive.

    Entries are sorted by path (a parent sorts before its children), all
    mtimes/uids/gids are 0, inode numbers are assigned in order. Missing parent
    directories are added. Duplicate paths are an error.
    """
    by_path: Dict[str, CpioEntry] = {}
    for e in entries:
        if e.path in by_path:
            raise ValueError(f"duplicate cpio path {e.path!r}")
        by_path[e.path] = e
    for p in list(by_path):
        parts = p.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            if parent not in by_path:
                by_path[parent] = dir_entry(parent)
            elif by_path[parent].mode & 0o170000 != S_IFDIR:
                raise ValueError(f"cpio path {p!r} is below non-directory {parent!r}")
    out = bytearray()
    for ino, path in enumerate(sorted(by_path), start=1):
        e = by_path[path]
        nlink = 2 if e.mode & 0o170000 == S_IFDIR else 1
        out += _newc_record(ino, e.mode, nlink, e.data, path, e.rdevmajor, e.rdevminor)
    out += _newc_record(0, 0, 1, b"", "TRAILER!!!")
    # pad the archive to a 512-byte multiple like cpio(1) does
    out += b"\0" * ((512 - len(out) % 512) % 512)
    return bytes(out)


def read_newc(blob: bytes) -> List[Tuple[str, int, bytes]]:
    """Parse a newc archive back into (path, mode, data); for tests and checks."""
    res = []
    off = 0
    while True:
        if blob[off:off + 6] != b"070701":
            raise ValueError(f"bad newc magic at offset {off}")
        f = [int(blob[off + 6 + 8 * i: off + 14 + 8 * i], 16) for i in range(13)]
        mode, filesize, namesize = f[1], f[6], f[11]
        name_start = off + 110
        name = blob[name_start:name_start + namesize - 1].decode()
        off = name_start + namesize
        off += (4 - off % 4) % 4
        data = blob[off:off + filesize]
        off += filesize
        off += (4 - off % 4) % 4
        if name == "TRAILER!!!":
            return res
        res.append((name, mode, data))
