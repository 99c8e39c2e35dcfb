"""`vnetct test`: the same set-up as `run`, then the unit tests (GoogleTest
through ctest), the pytest suites of the harness itself, and the sanitizer
stage (vnetct.cli.sanitizers: the GoogleTests under ASan+UBSan and TSan, a
short run of every fuzz target). CI runs exactly this.

--quick is the developer's loop (no guest image, no heavy tests, no sanitizer
stage); --sanitizers-only runs the sanitizer stage alone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Dict

from vnetct.cli import sanitizers
from vnetct.core import paths
from vnetct.setup import bootstrap

EXIT_FAILED = 1


def add_parser(commands) -> None:
    test = commands.add_parser("test", help="set up, then run the unit, harness and sanitizer tests")
    modes = test.add_mutually_exclusive_group()
    modes.add_argument("--quick", action="store_true",
                       help="the developer's loop: unit tests and the harness tests that boot no guest and run no "
                            "suite (pytest -m 'not heavy'), without building the guest image; no sanitizer stage")
    modes.add_argument("--sanitizers-only", action="store_true",
                       help="only the sanitizer stage: the GoogleTests under ASan+UBSan (%s) and TSan (%s), "
                            "the fuzz targets' corpus and a short run of each" % (paths.ASAN_BUILD.name,
                                                                                   paths.TSAN_BUILD.name))
    test.add_argument("--fuzz-seconds", type=int, default=sanitizers.DEFAULT_FUZZ_SECONDS, metavar="N",
                      help="how long the sanitizer stage fuzzes each target (default: %(default)s)")
    test.add_argument("pytest_args", nargs="*", help="extra arguments for pytest")


def pytest_env() -> Dict[str, str]:
    """The environment of the pytest processes (`run`, `list` and `test`): the harness package importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(paths.REPO / "harness" / "python"), env.get("PYTHONPATH", "")])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _sanitizer_stage(args) -> bool:
    print("vnetct: sanitizer stage (ASan+UBSan, TSan, fuzz targets)", flush=True)
    stage = sanitizers.run_stage(fuzz_seconds=args.fuzz_seconds)
    for failure in stage.failures:
        print(f"vnetct: sanitizer stage failed: {failure}", file=sys.stderr, flush=True)
    return stage.passed


# The harness tests that boot no guest and run no suite are independent of one another and
# mostly wait (subprocesses, sockets, fork-and-kill): they run in HARNESS_WORKERS pytest-xdist
# workers. The heavy ones run the default suite, a selftest or a certify, whose own lanes and
# 100k pps benches want the two cores: they follow, one after another, in one process.
HARNESS_WORKERS = 3


def harness_pytest_argv(heavy: bool, extra) -> list:
    """pytest's command line for the light (heavy=False) or the heavy harness tests."""
    suites = [str(paths.REPO / "harness" / "test"), str(paths.REPO / "guest_agent" / "image")]
    spread = [] if heavy else ["-n", str(HARNESS_WORKERS)]
    return [sys.executable, "-m", "pytest", *suites, "-p", "no:cacheprovider", "--rootdir", str(paths.REPO),
            *spread, "-m", "heavy" if heavy else "not heavy", *extra]


PYTEST_NOTHING_SELECTED = 5


def _harness_tests(args) -> int:
    """The light harness tests in parallel, then (not with --quick) the heavy ones. The worst
    exit status; a phase that selected nothing (pytest's 5, e.g. a -k matching only light tests)
    fails the command only when every phase selected nothing."""
    codes = []
    for heavy in ([False] if args.quick else [False, True]):
        what = "heavy: -m heavy, one after another" if heavy else f"light: -m 'not heavy' in {HARNESS_WORKERS} workers"
        print(f"vnetct: harness tests (pytest), {what}", flush=True)
        started = time.monotonic()
        code = subprocess.run(harness_pytest_argv(heavy, args.pytest_args), cwd=paths.REPO, env=pytest_env(),
                              check=False).returncode
        print(f"vnetct: harness tests ({'heavy' if heavy else 'light'}): exit {code} in "
              f"{time.monotonic() - started:.1f} s", flush=True)
        codes.append(code)
    failures = [code for code in codes if code not in (0, PYTEST_NOTHING_SELECTED)]
    if failures:
        return failures[0]
    return PYTEST_NOTHING_SELECTED if all(code == PYTEST_NOTHING_SELECTED for code in codes) else 0


def command_test(args) -> int:
    if args.sanitizers_only:
        bootstrap.ensure_packages(for_tests=True)
        bootstrap.require_root()
        return 0 if _sanitizer_stage(args) else EXIT_FAILED
    bootstrap.prepare(with_image=not args.quick, for_tests=True)
    bootstrap.require_root()
    started = time.monotonic()
    print("vnetct: unit tests (ctest)", flush=True)
    ctest = subprocess.run(["ctest", "--test-dir", str(paths.BUILD), "--output-on-failure", "-j2"], check=False)
    pytest_status = _harness_tests(args)
    sanitizers_passed = True
    if not args.quick:
        sanitizers_passed = _sanitizer_stage(args)
    stage = "" if args.quick else f", sanitizer stage {'passed' if sanitizers_passed else 'FAILED'}"
    print(f"vnetct: {'quick ' if args.quick else ''}tests finished in {time.monotonic() - started:.1f} s "
          f"(ctest exit {ctest.returncode}, pytest exit {pytest_status}{stage})", flush=True)
    return 0 if ctest.returncode == 0 and pytest_status == 0 and sanitizers_passed else EXIT_FAILED
