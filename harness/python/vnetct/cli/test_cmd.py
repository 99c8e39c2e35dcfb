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
    print("vnetct: harness tests (pytest)" + (", quick: -m 'not heavy'" if args.quick else ""), flush=True)
    suites = [str(paths.REPO / "harness" / "test"), str(paths.REPO / "guest_agent" / "image")]
    quick = ["-m", "not heavy"] if args.quick else []
    pytest_status = subprocess.run([sys.executable, "-m", "pytest", *suites, "-p", "no:cacheprovider",
                                    "--rootdir", str(paths.REPO), *quick, *args.pytest_args],
                                   cwd=paths.REPO, env=pytest_env(), check=False).returncode
    sanitizers_passed = True
    if not args.quick:
        sanitizers_passed = _sanitizer_stage(args)
    stage = "" if args.quick else f", sanitizer stage {'passed' if sanitizers_passed else 'FAILED'}"
    print(f"vnetct: {'quick ' if args.quick else ''}tests finished in {time.monotonic() - started:.1f} s "
          f"(ctest exit {ctest.returncode}, pytest exit {pytest_status}{stage})", flush=True)
    return 0 if ctest.returncode == 0 and pytest_status == 0 and sanitizers_passed else EXIT_FAILED
