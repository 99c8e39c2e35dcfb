"""QEMU releases from Debian's own packages, for `vnetct run --qemu-release`.

A release is one Debian suite's qemu-system-x86 (`7.2` is bookworm's, `11.1`
trixie-backports'), unpacked with mmdebstrap into a sysroot under the cache
(`<cache>/qemu-releases/<suites>/`) and run on this host through the sysroot's
own loader by a wrapper script, `vnetct-qemu`, that passes every argument
through. `10.0` is the QEMU the set-up installed with apt. The sysroot is made
once: it is built in a temporary directory and renamed into place when
complete, so a directory with `release.json` is whole; a cache hit also needs
the QEMU binary to still match the digest recorded there. A lock file keeps
two processes from preparing the same release at once."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

from vnetct.core import paths

MIRROR = "http://deb.debian.org/debian"
SUITES = ("bookworm", "bookworm-backports", "trixie", "trixie-backports", "sid")
QEMU_PACKAGE = "qemu-system-x86"
WRAPPER = "vnetct-qemu"
RECORD = "release.json"
QEMU_IN_SYSROOT = "usr/bin/qemu-system-x86_64"
LOADER = "lib64/ld-linux-x86-64.so.2"
LIBRARY_DIRS = ("usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu")
MODULE_DIR = "usr/lib/x86_64-linux-gnu/qemu"
# Firmware and option ROM dirs of the sysroot, in QEMU's -L order (only those present are passed).
DATA_DIRS = ("usr/share/qemu", "usr/share/seabios", "usr/lib/ipxe/qemu")
MMDEBSTRAP_TIMEOUT_S = 1800.0
LOCK_TIMEOUT_S = MMDEBSTRAP_TIMEOUT_S + 60.0
LOCK_POLL_S = 0.5

Say = Callable[[str], None]


class ReleaseError(Exception):
    """A release that is unknown or could not be prepared; the message names it and what failed."""


@dataclass(frozen=True)
class Release:
    name: str                 # what the user asked for: "11.1", "trixie", ...
    suites: Tuple[str, ...]   # Debian suites in the sysroot's sources; empty: the apt-installed QEMU
    description: str

    @property
    def installed(self) -> bool:
        return not self.suites

    @property
    def key(self) -> str:
        """The sysroot's directory name: one per suite set, so `7.2` and `bookworm` share one."""
        return "+".join(self.suites)

    @property
    def target_suite(self) -> str:
        """The suite QEMU is taken from (apt's default release): the last, e.g. the backports."""
        return self.suites[-1]


def _suites_of(suite: str) -> Tuple[str, ...]:
    """A backports suite comes with its base suite (its dependencies live there)."""
    return (suite.removesuffix("-backports"), suite) if suite.endswith("-backports") else (suite,)


# The releases by version; a Debian suite name is accepted as well (`trixie` is a trixie sysroot of 10.0.x).
CATALOG: Dict[str, Release] = {release.name: release for release in (
    Release("7.2", _suites_of("bookworm"), "QEMU 7.2 from Debian bookworm"),
    Release("10.0", (), "QEMU 10.0 as the set-up installed it with apt (bookworm-backports), "
                        f"{paths.DEFAULT_QEMU}; ask for 'trixie' for a trixie sysroot"),
    Release("11.1", _suites_of("trixie-backports"), "QEMU 11.1 from Debian trixie-backports"),
)}


def known_names() -> str:
    return ", ".join([*CATALOG, *SUITES])


def release_named(name: str) -> Release:
    """The release `name` (a catalog version or a Debian suite); ReleaseError listing the known ones."""
    if name in CATALOG:
        return CATALOG[name]
    if name in SUITES:
        return Release(name, _suites_of(name), f"QEMU from Debian {name}")
    raise ReleaseError(f"--qemu-release {name}: unknown release (known: {known_names()}; "
                       "or give a binary with --qemu PATH)")


def releases_dir(cache: Optional[Path] = None) -> Path:
    return Path(cache or paths.CACHE) / "qemu-releases"


@dataclass
class Prepared:
    release: Release
    qemu: Path                # what to run as --qemu: the wrapper, or the apt-installed binary
    record: dict              # release.json (for the apt-installed one: its version line)
    cached: bool


def digest(path: Path) -> str:
    with open(path, "rb") as binary:
        return "sha256:" + hashlib.file_digest(binary, "sha256").hexdigest()


def first_version_line(qemu: Path, name: str) -> str:
    try:
        result = subprocess.run([str(qemu), "-version"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ReleaseError(f"QEMU {name}: cannot run {qemu} -version ({error})") from error
    lines = result.stdout.splitlines()
    if result.returncode != 0 or not lines or "QEMU emulator version" not in lines[0]:
        raise ReleaseError(f"QEMU {name}: '{qemu} -version' did not print a QEMU version (exit "
                           f"{result.returncode}): {(result.stdout + result.stderr).strip()[-600:]}")
    return lines[0]


def package_version(sysroot: Path, package: str = QEMU_PACKAGE) -> Optional[str]:
    """The version of `package` in the sysroot's dpkg status, if installed there."""
    try:
        text = (sysroot / "var/lib/dpkg/status").read_text(errors="replace")
    except OSError:
        return None
    for stanza in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " ")
        if fields.get("Package") == package and fields.get("Status", "").endswith(" installed"):
            return fields.get("Version")
    return None


def wrapper_text(release: Release, sysroot: Path) -> str:
    """The wrapper: the sysroot's QEMU through the sysroot's loader, its libraries,
    modules and firmware; paths relative to the wrapper so the directory may move."""
    data_dirs = " ".join(f'-L "$root/{d}"' for d in DATA_DIRS if (sysroot / d).is_dir())
    library_path = ":".join(f"$root/{d}" for d in LIBRARY_DIRS)
    return (f"#!/bin/sh\n"
            f"# vnetct: {release.description} ({', '.join(release.suites)}), written by vnetct.setup.releases.\n"
            f"# Runs the sysroot's QEMU on this host; every argument is passed through.\n"
            f'root="$(dirname "$(readlink -f "$0")")"\n'
            f'export QEMU_MODULE_DIR="$root/{MODULE_DIR}"\n'
            f'exec "$root/{LOADER}" --library-path "{library_path}" "$root/{QEMU_IN_SYSROOT}" {data_dirs} "$@"\n')


def cached_record(sysroot: Path) -> Optional[dict]:
    """release.json if the sysroot is whole and its QEMU is the one recorded, else None."""
    try:
        record = json.loads((sysroot / RECORD).read_text())
        recorded = record["qemu_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    binary = sysroot / QEMU_IN_SYSROOT
    if not (sysroot / WRAPPER).is_file() or not binary.is_file() or digest(binary) != recorded:
        return None
    return record


def describe(qemu: str) -> Optional[dict]:
    """If `qemu` is a release wrapper: its release.json with the digest of the
    binary it runs, measured now (for the SUT's identity); else None."""
    path = Path(qemu)
    if path.name != WRAPPER:
        return None
    try:
        record = json.loads((path.parent / RECORD).read_text())
        return {**record, "qemu_sha256": digest(path.parent / QEMU_IN_SYSROOT), "sysroot": str(path.parent)}
    except (OSError, ValueError):
        return None


class _Lock:
    """An exclusive flock on `<sysroot>.lock`; waits for another preparer up to a deadline."""

    def __init__(self, path: Path, name: str, say: Say, timeout: float):
        self.path, self.name, self.say, self.timeout = path, name, say, timeout
        self.file = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a+")
        deadline = time.monotonic() + self.timeout
        announced = False
        while True:
            try:
                fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = self._holder()
                    self.file.close()
                    raise ReleaseError(f"QEMU {self.name}: another process ({holder}) has been preparing "
                                       f"it for over {self.timeout:.0f} s (lock {self.path})") from None
                if not announced:
                    self.say(f"vnetct: QEMU {self.name}: waiting for {self._holder()}, which is preparing it "
                             f"(lock {self.path}, up to {self.timeout:.0f} s)")
                    announced = True
                time.sleep(LOCK_POLL_S)
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"pid {os.getpid()}\n")
        self.file.flush()
        return self

    def _holder(self) -> str:
        self.file.seek(0)
        return self.file.read().strip() or "pid unknown"

    def __exit__(self, *exc):
        self.file.truncate(0)
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


def mmdebstrap_argv(release: Release, target: Path) -> list:
    return ["mmdebstrap", "--variant=apt", f"--include={QEMU_PACKAGE}",
            f'--aptopt=APT::Default-Release "{release.target_suite}"', release.suites[0], str(target),
            *(f"deb {MIRROR} {suite} main" for suite in release.suites)]


def _ensure_mmdebstrap() -> None:
    from vnetct.setup import bootstrap

    try:
        bootstrap.ensure_extra_packages(bootstrap.RELEASE_PACKAGES)
    except bootstrap.SetupError as error:
        raise ReleaseError(f"cannot install mmdebstrap: {error}") from error


def build_sysroot(release: Release, target: Path, log_path: Path) -> None:
    """mmdebstrap the release's suites with qemu-system-x86 into `target` (absent)."""
    _ensure_mmdebstrap()
    argv = mmdebstrap_argv(release, target)
    with log_path.open("w") as log:
        log.write("$ " + " ".join(argv) + "\n")
        log.flush()
        try:
            result = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, timeout=MMDEBSTRAP_TIMEOUT_S,
                                    check=False)
            status = f"exit {result.returncode}" if result.returncode else None
        except subprocess.TimeoutExpired:
            status = f"no end after {MMDEBSTRAP_TIMEOUT_S:.0f} s"
    if status:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise ReleaseError(f"QEMU {release.name}: mmdebstrap of {', '.join(release.suites)} failed ({status}); "
                           f"log: {log_path}\n{tail}")


def prepare(name: str, cache: Optional[Path] = None, say: Optional[Say] = None,
            builder: Callable[[Release, Path, Path], None] = build_sysroot,
            lock_timeout: float = LOCK_TIMEOUT_S) -> Prepared:
    """The release `name`, ready to run: from the cache, or made now."""
    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    release = release_named(name)
    if release.installed:
        return _installed(release)
    root = releases_dir(cache)
    sysroot = root / release.key
    with _Lock(root / f"{release.key}.lock", release.name, say, lock_timeout):
        record = cached_record(sysroot)
        if record is not None:
            say(f"vnetct: QEMU {release.name} ({', '.join(release.suites)}): cached in {sysroot} "
                f"({record['version_line']})")
            return Prepared(release, sysroot / WRAPPER, record, cached=True)
        return Prepared(release, sysroot / WRAPPER, _make(release, sysroot, builder, say), cached=False)


def _make(release: Release, sysroot: Path, builder, say: Say) -> dict:
    """Build into `<key>.tmp` (the lock is held: any leftover is abandoned), check, record, rename."""
    temp = sysroot.with_name(sysroot.name + ".tmp")
    for leftover in (temp, sysroot):  # a half-made or stale directory is never reused
        if leftover.exists():
            say(f"vnetct: QEMU {release.name}: removing {leftover} (incomplete or stale)")
            shutil.rmtree(leftover)
    log_path = sysroot.with_name(sysroot.name + ".log")
    say(f"vnetct: preparing QEMU {release.name} ({', '.join(release.suites)}) in {sysroot} "
        f"(mmdebstrap, log: {log_path})")
    started = time.monotonic()
    builder(release, temp, log_path)
    missing = [part for part in (QEMU_IN_SYSROOT, LOADER) if not (temp / part).is_file()]
    if missing:
        raise ReleaseError(f"QEMU {release.name}: the sysroot {temp} has no {', '.join(missing)} "
                           f"(log: {log_path})")
    wrapper = temp / WRAPPER
    wrapper.write_text(wrapper_text(release, temp))
    wrapper.chmod(0o755)
    record = {"release": release.name, "suites": list(release.suites), "mirror": MIRROR,
              "package": QEMU_PACKAGE, "package_version": package_version(temp),
              "version_line": first_version_line(wrapper, release.name),
              "qemu_sha256": digest(temp / QEMU_IN_SYSROOT),
              "prepared_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "seconds": round(time.monotonic() - started, 1)}
    (temp / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    temp.rename(sysroot)
    say(f"vnetct: QEMU {release.name} prepared in {record['seconds']:.1f} s: {record['version_line']} "
        f"({QEMU_PACKAGE} {record['package_version']})")
    return record


def _installed(release: Release) -> Prepared:
    """The apt-installed QEMU, checked to be the release asked for."""
    qemu = paths.DEFAULT_QEMU
    if not qemu.is_file():
        raise ReleaseError(f"QEMU {release.name}: {qemu} is missing (the set-up installs it)")
    line = first_version_line(qemu, release.name)
    if not line.split("version ", 1)[-1].startswith(release.name + "."):
        raise ReleaseError(f"QEMU {release.name}: {qemu} is not QEMU {release.name} ({line}); "
                           f"ask for a Debian suite instead (one of {', '.join(SUITES)})")
    return Prepared(release, qemu, {"release": release.name, "suites": [], "version_line": line}, cached=True)


def usage_error(qemu: Optional[str], release: Optional[str], needs_qemu: bool) -> Optional[str]:
    """What is wrong with `--qemu` / `--qemu-release` on this command line, or None
    (checked before any set-up)."""
    if release is None:
        return None
    if qemu is not None:
        return f"--qemu {qemu} and --qemu-release {release}: give one of them (both name the QEMU under test)"
    if not needs_qemu:
        return f"--qemu-release {release}: this profile runs no QEMU"
    try:
        release_named(release)
    except ReleaseError as error:
        return str(error)
    return None
