"""The sanitizer stage of `vnetct test` (issue 17, part 2): the C++ under
AddressSanitizer + UndefinedBehaviorSanitizer (with LeakSanitizer) and under
ThreadSanitizer, and a short run of every libFuzzer target.

  1. build the ASan+UBSan tree (clang, -O0, the GoogleTests, the fuzz targets,
     the sanitizer canary) and the TSan tree (the channel and QMP tests only);
  2. the canary: each tree must catch a seeded bug (a heap overflow, a leak, a
     signed overflow; a data race), so a tree that lost its instrumentation
     fails the stage instead of passing everything;
  3. ctest in the ASan tree (every GoogleTest, LeakSanitizer on);
  4. the channel, QMP, interposer and agent-client tests in the TSan tree;
  5. each fuzz target: the committed corpus replayed, then `fuzz_seconds` of
     fuzzing from it, two targets at a time; one target also once with its
     seeded heap overflow, which must stop it.

Each step prints what it runs and how long it took; a failure names the test
or the target (and keeps the fuzzer's crash input under out/fuzz/)."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from vnetct.core import paths

FUZZ_TARGETS = ("json_lines_fuzz", "livetap_codec_fuzz", "config_space_fuzz", "domain_xml_fuzz",
                "trace_parser_fuzz", "sriov_journal_fuzz")
ASAN_TESTS = ("common_test", "reference_impl_test", "host_agent_test", "sriov_test", "livetap_test",
              "teaming_test", "groupid_test", "guest_agent_test", "remote_test")
# What TSan runs: the code with a reader thread (the line-JSON channel) and what is built on it
# (host_agent_test alone: the TSan tree then builds no reference or live-TAP library).
TSAN_RUNS = {
    "host_agent_test": "JsonLineChannel_test.*:QmpClient_test.*:QmpInterposer_test.*:GuestAgentClient_test.*"
                       ":HostilePeer_test.*:EventLog*:Transcript*",
}
# -O0: the trees are built for one run of each test and a minute of fuzzing, and compile
# time is most of the stage (qmp_client.cpp under ASan: 7.7 s at -O0 -g, 10.6 s at -O1
# -gline-tables-only, 13.7 s at -O1 -g); file:line stays in the sanitizers' reports.
SANITIZE_FLAGS = "-O0 -gline-tables-only"
# The seeded bugs of fuzz/sanitizer_canary.cpp and what the sanitizer must say about each.
ASAN_CANARY = {"heap-overflow": "heap-buffer-overflow", "leak": "detected memory leaks",
               "signed-overflow": "signed integer overflow"}
TSAN_CANARY = {"data-race": "ThreadSanitizer: data race"}
SEEDED_FUZZ_TARGET = "config_space_fuzz"
DEFAULT_FUZZ_SECONDS = 60
ASAN_OPTIONS = "detect_leaks=1:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=0"
UBSAN_OPTIONS = "print_stacktrace=1:halt_on_error=1"
TSAN_OPTIONS = "halt_on_error=1:second_deadlock_stack=1"

Log = Callable[[str], None]


def say(text: str) -> None:
    print(f"vnetct: sanitizers: {text}", flush=True)


@dataclass
class FuzzFigures:
    """One fuzz target's run, from libFuzzer's output."""
    target: str
    executions: Optional[int] = None
    exec_per_second: Optional[int] = None
    cov: Optional[int] = None
    ft: Optional[int] = None
    seconds: float = 0.0
    failure: Optional[str] = None  # None: it ran to its end with no finding

    def line(self) -> str:
        figures = (f"{self.executions} executions, {self.exec_per_second} exec/s, cov {self.cov}, ft {self.ft}, "
                   f"{self.seconds:.0f} s")
        return f"{self.target}: " + (f"FAILED ({self.failure}); " if self.failure else "") + figures


@dataclass
class StageResult:
    failures: List[str] = field(default_factory=list)
    fuzz: List[FuzzFigures] = field(default_factory=list)
    seconds: Dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.failures


_DONE = re.compile(r"#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+)")
_PROGRESS = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+)")
_EXECUTED = re.compile(r"stat::number_of_executed_units:\s*(\d+)")
_RATE = re.compile(r"stat::average_exec_per_sec:\s*(\d+)")
_FINDING = re.compile(r"(ERROR: AddressSanitizer: [\w-]+|ERROR: LeakSanitizer: [\w ]+|runtime error: [^\n]+"
                      r"|ERROR: libFuzzer: [\w-]+|vnetct fuzz: invariant broken[^\n]*|ThreadSanitizer: [\w ]+)")


def fuzz_figures(target: str, output: str, status: int, seconds: float) -> FuzzFigures:
    """The figures of one libFuzzer run (-print_final_stats=1) and its finding, if any."""
    figures = FuzzFigures(target, seconds=seconds)
    done = _DONE.findall(output) or _PROGRESS.findall(output)
    if done:
        figures.cov, figures.ft = int(done[-1][1]), int(done[-1][2])
    if executed := _EXECUTED.search(output):
        figures.executions = int(executed.group(1))
    elif done:
        figures.executions = int(done[-1][0])
    if rate := _RATE.search(output):
        figures.exec_per_second = int(rate.group(1))
    if status != 0:
        finding = _FINDING.search(output)
        figures.failure = finding.group(1).strip() if finding else f"exit status {status}"
        if artifact := re.search(r"Test unit written to (\S+)", output):
            figures.failure += f"; input kept at {artifact.group(1)}"
    return figures


def sanitizer_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ, ASAN_OPTIONS=ASAN_OPTIONS, UBSAN_OPTIONS=UBSAN_OPTIONS, TSAN_OPTIONS=TSAN_OPTIONS)
    suppressions = paths.FUZZ / "tsan.supp"
    if suppressions.exists():
        env["TSAN_OPTIONS"] += f":suppressions={suppressions}"
    env.update(extra or {})
    return env


def _run_logged(command: Sequence[str], log_path: Path, env: Optional[Dict[str, str]] = None,
                cwd: Optional[Path] = None) -> int:
    with log_path.open("a") as log:
        log.write(f"\n$ {' '.join(str(part) for part in command)}\n")
        log.flush()
        return subprocess.run([str(part) for part in command], stdout=log, stderr=subprocess.STDOUT, env=env,
                              cwd=cwd, check=False).returncode


def _tail(log_path: Path, lines: int = 30) -> str:
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])


def build_tree(build: Path, sanitize: str, fuzz: bool, targets: Sequence[str], jobs: int) -> Optional[str]:
    """Configures (once) and builds `targets` with clang; an error text, or None."""
    build.mkdir(parents=True, exist_ok=True)
    log_path = build / "build.log"
    log_path.write_text("")
    if not (build / "CMakeCache.txt").exists():
        # Ninja: the targets are built side by side (make builds named goals one after another).
        configure = ["cmake", "-G", "Ninja", "-S", paths.REPO, "-B", build, "-DCMAKE_CXX_COMPILER=clang++",
                     "-DCMAKE_BUILD_TYPE=Sanitize", f"-DCMAKE_CXX_FLAGS_SANITIZE={SANITIZE_FLAGS}",
                     f"-DVNETCT_SANITIZE={sanitize}", f"-DVNETCT_FUZZ={'ON' if fuzz else 'OFF'}"]
        if _run_logged(configure, log_path) != 0:
            return f"configuring {build} failed; log {log_path}:\n{_tail(log_path)}"
    target_args = [arg for target in targets for arg in ("--target", target)]
    if _run_logged(["cmake", "--build", build, f"-j{jobs}", *target_args], log_path) != 0:
        return f"building {build} failed; log {log_path}:\n{_tail(log_path)}"
    return None


def canary_check(build: Path, bugs: Dict[str, str], env: Dict[str, str]) -> List[str]:
    """Each seeded bug must fail the canary with the sanitizer's report."""
    failures = []
    canary = build / "fuzz" / "sanitizer_canary"
    for bug, report in bugs.items():
        result = subprocess.run([str(canary), bug], capture_output=True, text=True, env=env, check=False)
        if result.returncode == 0 or report not in result.stderr:
            failures.append(f"{build.name}: the seeded bug '{bug}' was not caught (sanitizer_canary {bug} exit "
                            f"{result.returncode}, no '{report}' in its output): the tree is not instrumented")
    return failures


def run_ctest(build: Path, jobs: int, env: Dict[str, str]) -> List[str]:
    log_path = build / "ctest.log"
    log_path.write_text("")
    status = _run_logged(["ctest", "--test-dir", build, "--output-on-failure", f"-j{jobs}",
                          "--output-junit", build / "ctest-junit.xml"], log_path, env=env)
    if status == 0:
        return []
    failed = re.findall(r"^\s*\d+ - (\S+) \(", log_path.read_text(errors="replace"), re.MULTILINE)
    return [f"{build.name}: ctest {name} failed (log {log_path})" for name in failed] or [
        f"{build.name}: ctest exit {status} (log {log_path})"]


def run_gtests(build: Path, runs: Dict[str, str], env: Dict[str, str]) -> List[str]:
    failures = []
    log_path = build / "tsan-tests.log"
    log_path.write_text("")
    for executable, test_filter in runs.items():
        binary = next(build.rglob(executable), None)
        if binary is None:
            failures.append(f"{build.name}: {executable} was not built")
            continue
        status = _run_logged([binary, f"--gtest_filter={test_filter}"], log_path, env=env, cwd=binary.parent)
        if status != 0:
            text = log_path.read_text(errors="replace")
            failed = sorted(set(re.findall(r"^\[  FAILED  \] (\S+\.\S+)", text, re.MULTILINE)))
            race = "; ThreadSanitizer reported: " + ", ".join(sorted(set(re.findall(
                r"WARNING: ThreadSanitizer: ([\w -]+?) \(", text)))) if "ThreadSanitizer" in text else ""
            failures.append(f"{build.name}: {executable} --gtest_filter={test_filter} exit {status}"
                            f" ({', '.join(failed) or 'stopped by the sanitizer'}){race}; log {log_path}")
    return failures


def fuzz_command(binary: Path, target: str, work: Path, seconds: int, artifacts: Path) -> List[str]:
    """libFuzzer from the committed corpus (read only); new inputs go to `work`."""
    return [str(binary), f"-max_total_time={seconds}", "-print_final_stats=1", "-timeout=10",
            "-rss_limit_mb=1536", f"-artifact_prefix={artifacts}/{target}-", str(work),
            str(paths.FUZZ / "corpus" / target)]


def run_fuzzers(build: Path, targets: Sequence[str], seconds: int, parallel: int, env: Dict[str, str],
                artifacts: Path, log: Log = say) -> List[FuzzFigures]:
    """Replays each target's corpus, then fuzzes it for `seconds`; `parallel` at a time."""
    artifacts.mkdir(parents=True, exist_ok=True)
    results: List[FuzzFigures] = []
    pending = list(targets)
    running: List[tuple] = []
    with tempfile.TemporaryDirectory(prefix="vnetct-fuzz-") as scratch:
        while pending or running:
            while pending and len(running) < parallel:
                target = pending.pop(0)
                binary = build / "fuzz" / target
                work = Path(scratch) / target
                work.mkdir()
                output = Path(scratch) / f"{target}.log"
                log(f"fuzz {target}: corpus replay and {seconds} s of fuzzing")
                process = subprocess.Popen(fuzz_command(binary, target, work, seconds, artifacts),
                                           stdout=subprocess.DEVNULL, stderr=output.open("w"), env=env)
                running.append((target, process, output, time.monotonic()))
            target, process, output, started = running.pop(0)
            status = process.wait()
            figures = fuzz_figures(target, output.read_text(errors="replace"), status, time.monotonic() - started)
            if figures.failure:
                kept = artifacts / f"{target}.log"
                kept.write_text(output.read_text(errors="replace"))
                figures.failure += f"; log {kept}"
            log(figures.line())
            results.append(figures)
    return results


def seeded_fuzz_check(build: Path, env: Dict[str, str]) -> List[str]:
    """A fuzz target with its seeded heap overflow on must be stopped by ASan."""
    target = SEEDED_FUZZ_TARGET
    seeded_env = dict(env, VNETCT_FUZZ_SEEDED_BUG="heap-overflow")
    with tempfile.TemporaryDirectory(prefix="vnetct-fuzz-seeded-") as scratch:
        result = subprocess.run([str(build / "fuzz" / target), "-runs=0", f"-artifact_prefix={scratch}/",
                                 str(paths.FUZZ / "corpus" / target)],
                                capture_output=True, text=True, env=seeded_env, check=False)
    figures = fuzz_figures(target, result.stderr, result.returncode, 0)
    if figures.failure and "heap-buffer-overflow" in figures.failure:
        return []
    return [f"{target} with VNETCT_FUZZ_SEEDED_BUG=heap-overflow was not stopped by AddressSanitizer "
            f"(exit {result.returncode}): the fuzz targets are not instrumented"]


def run_stage(jobs: int = 2, fuzz_seconds: int = DEFAULT_FUZZ_SECONDS,
              targets: Sequence[str] = FUZZ_TARGETS) -> StageResult:
    result = StageResult()
    stage_started = time.monotonic()

    def step(name: str, action: Callable[[], List[str]]) -> None:
        say(f"{name} ...")
        started = time.monotonic()
        failures = action()
        result.seconds[name] = time.monotonic() - started
        result.failures.extend(failures)
        say(f"{name}: {'FAILED' if failures else 'ok'} in {result.seconds[name]:.1f} s")
        for failure in failures:
            say(f"  {failure}")

    asan, tsan = paths.ASAN_BUILD, paths.TSAN_BUILD
    env = sanitizer_env()
    step(f"build {asan.name} (ASan+UBSan, fuzz targets)",
         lambda: [e for e in [build_tree(asan, "address,undefined", True,
                                         [*ASAN_TESTS, "livetap_backend", "sanitizer_canary", *targets], jobs)] if e])
    step(f"build {tsan.name} (TSan)",
         lambda: [e for e in [build_tree(tsan, "thread", False, [*TSAN_RUNS, "sanitizer_canary"], jobs)] if e])
    if result.failures:
        return _finish(result, stage_started)
    step("canary: seeded bugs are caught",
         lambda: canary_check(asan, ASAN_CANARY, env) + canary_check(tsan, TSAN_CANARY, env)
         + seeded_fuzz_check(asan, env))
    step("ctest under ASan+UBSan+LSan", lambda: run_ctest(asan, jobs, env))
    step("channel and QMP tests under TSan", lambda: run_gtests(tsan, TSAN_RUNS, env))

    def fuzz() -> List[str]:
        result.fuzz = run_fuzzers(asan, targets, fuzz_seconds, jobs, env, paths.OUT / "fuzz")
        return [f"fuzz target {figures.line()}" for figures in result.fuzz if figures.failure]

    step(f"fuzz targets ({fuzz_seconds} s each, {jobs} at a time)", fuzz)
    return _finish(result, stage_started)


def _finish(result: StageResult, started: float) -> StageResult:
    result.seconds["stage"] = time.monotonic() - started
    say(f"{'passed' if result.passed else 'FAILED'} in {result.seconds['stage']:.1f} s")
    return result
