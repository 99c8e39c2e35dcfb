"""Set-up shared by `vnetct run` and `vnetct test`: Debian packages, the C++
build, and the guest image. Each step says what it does and is skipped when
already done, so a warm start costs a few seconds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

from vnetct.core import paths

BACKPORTS_SUITE = "bookworm-backports"
BACKPORTS_LIST = Path("/etc/apt/sources.list.d/vnetct-bookworm-backports.list")
BACKPORTS_LINE = "deb http://deb.debian.org/debian bookworm-backports main\n"

# package -> why we need it. qemu-system-x86 comes from bookworm-backports (10.x).
PACKAGES: Dict[str, str] = {
    "qemu-system-x86": "the system under test (QEMU 10 from bookworm-backports)",
    "busybox-static": "the guest's userland",
    "cpio": "initramfs tooling",
    "zstd": "initramfs compression",
    "xz-utils": "kernel module decompression",
    "iproute2": "network namespaces, bridge, TAPs",
    "nftables": "wire impairment for the seeded faults (bridge family: loss, blackouts)",
    "python3-scapy": "the wire seen from the host: frames sniffed on the TAPs, attributed per port",
    "cmake": "C++ build",
    "make": "C++ build",
    "g++": "C++ build",
    "libgtest-dev": "GoogleTest",
    "nlohmann-json3-dev": "JSON in C++",
    "libexpected-dev": "tl::expected (Result values)",
    "pybind11-dev": "the Python binding of the native core",
    "python3-dev": "the Python binding of the native core",
    "python3-pytest": "the case runner",
    "python3-pytest-xdist": "the parallel lanes of vnetct run -j N (pytest -n N --dist loadgroup; vnetct.lanes)",
    "python3-jinja2": "the HTML report's templates",
    "libxml2-dev": "vnetct check-config: libvirt domain XML, parsed without network, DTD or entities",
    "pkg-config": "C++ build: finds libxml2",
    "ethtool": "a TAP's offloads read from the host (live-TAP LT-DATA-02, LT-XFER-03); vnetct certify: the PF's "
               "driver and firmware in the environment fingerprint (--profile vf)",
    "python3-yaml": "the host profile file of --profile vf (YAML, parsed with line numbers)",
}
# Only `vnetct test` needs these (kept out of `vnetct run`'s install).
TEST_PACKAGES: Dict[str, str] = {
    "chromium": "the report's browser test (headless: loads report.html, checks the console, keeps a screenshot)",
    "python3-hypothesis": "property tests of the rules table (harness/test/test_rules_table.py)",
    "clang": "the sanitizer stage of vnetct test: libFuzzer (-fsanitize=fuzzer) and the ASan/UBSan/TSan trees "
             "(vnetct.cli.sanitizers)",
    "ninja-build": "the sanitizer stage of vnetct test: builds its trees' targets side by side",
}
# `vnetct prepare-image` (and its tests) need these.
IMAGE_PACKAGES: Dict[str, str] = {
    "python3-guestfs": "prepare-image: libguestfs, to inject the guest agent into distribution qcow2 images",
    "kmod": "prepare-image: depmod indexes the module tree of the libguestfs appliance's kernel",
}
# `vnetct run --qemu-release` needs these (installed when a release is prepared).
RELEASE_PACKAGES: Dict[str, str] = {
    "mmdebstrap": "--qemu-release: unpacks a Debian suite's QEMU into a sysroot (vnetct.setup.releases)",
}
MIN_QEMU_MAJOR = 10

Log = Callable[[str], None]


class SetupError(Exception):
    """A set-up step failed; the message names the step and what to do."""


def say(text: str) -> None:
    print(f"vnetct: {text}", flush=True)


def installed_versions(names: List[str]) -> Dict[str, str]:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${db:Status-Status} ${Version}\n", *names],
        capture_output=True, text=True, check=False)
    versions = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "installed":
            versions[parts[0]] = parts[2]
    return versions


def _qemu_major(version: str) -> int:
    # "1:10.0.2+ds-2+deb13u1~bpo12+1" -> 10
    text = version.split(":", 1)[-1]
    try:
        return int(text.split(".", 1)[0])
    except ValueError:
        return 0


def _apt(args: List[str], log_path: Path) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with log_path.open("a") as log:
        log.write(f"\n$ apt-get {' '.join(args)}\n")
        log.flush()
        result = subprocess.run(["apt-get", *args], stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    if result.returncode != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-15:]
        raise SetupError(f"apt-get {' '.join(args)} failed (exit {result.returncode}); "
                         f"log: {log_path}\n" + "\n".join(tail))


def _backports_configured() -> bool:
    sources = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
    for source in sources:
        try:
            if BACKPORTS_SUITE in source.read_text(errors="replace"):
                return True
        except OSError:
            continue
    return False


def ensure_packages(for_tests: bool = False, for_images: bool = False) -> None:
    wanted = (list(PACKAGES) + (list(TEST_PACKAGES) if for_tests else [])
              + (list(IMAGE_PACKAGES) if for_tests or for_images else []))
    versions = installed_versions(wanted)
    missing = [name for name in wanted if name not in versions]
    qemu_old = "qemu-system-x86" in versions and _qemu_major(versions["qemu-system-x86"]) < MIN_QEMU_MAJOR
    if not missing and not qemu_old:
        say(f"packages: all {len(wanted)} present (QEMU {versions['qemu-system-x86']})")
        return
    if os.geteuid() != 0:
        raise SetupError(f"packages missing ({', '.join(missing) or 'QEMU >= 10'}); run as root so apt-get can "
                         "install them")
    paths.CACHE.mkdir(parents=True, exist_ok=True)
    log_path = paths.CACHE / "apt.log"
    if not _backports_configured():
        say(f"packages: adding the {BACKPORTS_SUITE} suite to apt ({BACKPORTS_LIST})")
        BACKPORTS_LIST.write_text(BACKPORTS_LINE)
    say(f"packages: apt-get update (log: {log_path})")
    _apt(["update", "-q"], log_path)
    started = time.monotonic()
    if "qemu-system-x86" in missing or qemu_old:
        say("packages: installing QEMU 10 from bookworm-backports")
        _apt(["install", "-y", "-q", "--no-install-recommends", "-t", BACKPORTS_SUITE, "qemu-system-x86"], log_path)
    others = [name for name in missing if name != "qemu-system-x86"]
    if others:
        say(f"packages: installing {' '.join(others)}")
        _apt(["install", "-y", "-q", "--no-install-recommends", *others], log_path)
    say(f"packages: done in {time.monotonic() - started:.1f} s")


def ensure_extra_packages(packages: Dict[str, str]) -> None:
    """Install those of `packages` (name -> why) that are missing, from the host's suite."""
    missing = [name for name in packages if name not in installed_versions(list(packages))]
    if not missing:
        return
    if os.geteuid() != 0:
        raise SetupError(f"packages missing ({', '.join(missing)}); run as root so apt-get can install them")
    paths.CACHE.mkdir(parents=True, exist_ok=True)
    log_path = paths.CACHE / "apt.log"
    started = time.monotonic()
    say(f"packages: installing {' '.join(missing)} ({'; '.join(packages[name] for name in missing)}; "
        f"log: {log_path})")
    _apt(["update", "-q"], log_path)
    _apt(["install", "-y", "-q", "--no-install-recommends", *missing], log_path)
    say(f"packages: done in {time.monotonic() - started:.1f} s")


RUN_TARGETS = ("vnetct_native", "vnetct-guest-agent", "livetap_backend")


def build_native(jobs: int = 2, targets=None) -> None:
    """Configure once, then build `targets` (all of them when None)."""
    build = paths.BUILD
    log_path = build / "build.log"
    build.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    steps = []
    if not (build / "CMakeCache.txt").exists():
        steps.append(["cmake", "-S", str(paths.REPO), "-B", str(build), "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                      f"-DPython3_EXECUTABLE={sys.executable}"])
    target_args = [arg for target in targets for arg in ("--target", target)] if targets else []
    steps.append(["cmake", "--build", str(build), f"-j{jobs}", *target_args])
    say(f"build: cmake --build {build} -j{jobs} {' '.join(target_args)} (log: {log_path})".replace("  ", " "))
    with log_path.open("w") as log:
        for step in steps:
            log.write(f"$ {' '.join(step)}\n")
            log.flush()
            result = subprocess.run(step, stdout=log, stderr=subprocess.STDOUT, check=False)
            if result.returncode != 0:
                tail = log_path.read_text(errors="replace").splitlines()[-25:]
                raise SetupError(f"build failed: {' '.join(step)} (exit {result.returncode}); log: {log_path}\n"
                                 + "\n".join(tail))
    say(f"build: done in {time.monotonic() - started:.1f} s")


def build_guest_image() -> dict:
    sys.path.insert(0, str(paths.REPO / "guest_agent" / "image"))
    try:
        import build_image  # type: ignore  # noqa: E402
    finally:
        sys.path.pop(0)
    started = time.monotonic()
    try:
        image = build_image.build_image(paths.IMAGE_CACHE, paths.AGENT_BINARY, log=say)
    except build_image.BuildError as error:
        raise SetupError(f"guest image: {error}") from error
    say(f"guest image: ready in {time.monotonic() - started:.1f} s ({paths.IMAGE_CACHE})")
    return image


def prepare(with_image: bool = True, targets=None, for_tests: bool = False,
            for_images: bool = False) -> Optional[dict]:
    """Everything `run` and `test` need before any case runs (`for_tests`: also
    what only the tests need; `for_images`: what prepare-image needs)."""
    ensure_packages(for_tests=for_tests, for_images=for_images)
    build_native(targets=targets)
    return build_guest_image() if with_image else None


def require_root() -> None:
    if os.geteuid() != 0:
        raise SetupError("vnetct needs root: it creates network namespaces, TAPs and bridges for each run")


def which(name: str) -> Optional[str]:
    return shutil.which(name)
