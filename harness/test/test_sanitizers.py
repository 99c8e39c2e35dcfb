"""The sanitizer stage of `vnetct test` (vnetct.cli.sanitizers) fails on a
seeded bug, naming where: each of its runners is fed a real sanitizer finding
(fuzz/sanitizer_canary.cpp and a fuzz target with its seeded heap overflow,
compiled here with clang, a few seconds each), and reports it."""

import shutil
import subprocess
from pathlib import Path

import pytest

from vnetct.cli import sanitizers
from vnetct.core import paths

pytestmark = [pytest.mark.skipif(shutil.which("clang++") is None, reason="clang++ is not installed (package clang)"),
              pytest.mark.heavy("compiles six small sanitizer programs with clang (about 35 s): part of the "
                                "sanitizer stage, which --quick leaves out")]

# A fuzz target as fuzz/*.cpp are written, with nothing to test but the shared seeded bug.
SEEDED_TARGET = """
#include "fuzz_support.hpp"
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    vnetct::fuzz::maybe_seeded_bug(std::span<const std::uint8_t>(data, size));
    return 0;
}
"""

# libFuzzer's last lines as json_lines_fuzz printed them (-print_final_stats=1).
FINAL_STATS = """#10854\tDONE   cov: 2728 ft: 10105 corp: 674/191Kb lim: 568 exec/s: 1206 rss: 486Mb
Done 10854 runs in 9 second(s)
stat::number_of_executed_units: 10854
stat::average_exec_per_sec:     1206
"""


def _compile(tmp_path: Path, source: Path, output: Path, sanitize: str) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["clang++", "-std=c++20", "-O1", "-g", f"-fsanitize={sanitize}", "-fno-sanitize-recover=undefined",
                    f"-I{paths.FUZZ}", str(source), "-o", str(output), "-pthread"], check=True, cwd=tmp_path)
    return output


def test_libfuzzer_figures_are_read_from_its_final_stats():
    figures = sanitizers.fuzz_figures("json_lines_fuzz", FINAL_STATS, 0, 9.2)
    assert (figures.executions, figures.exec_per_second, figures.cov, figures.ft) == (10854, 1206, 2728, 10105)
    assert figures.failure is None


def test_a_fuzz_target_with_a_heap_overflow_fails_the_stage_naming_it(tmp_path, monkeypatch):
    source = tmp_path / "seeded_fuzz.cpp"
    source.write_text(SEEDED_TARGET)
    build = tmp_path / "build"
    _compile(tmp_path, source, build / "fuzz" / "config_space_fuzz", "fuzzer,address,undefined")
    env = sanitizers.sanitizer_env({"VNETCT_FUZZ_SEEDED_BUG": "heap-overflow"})
    results = sanitizers.run_fuzzers(build, ["config_space_fuzz"], 5, 1, env, tmp_path / "artifacts",
                                     log=lambda _text: None)
    assert len(results) == 1 and results[0].failure is not None
    assert "ERROR: AddressSanitizer: heap-buffer-overflow" in results[0].failure
    assert results[0].line().startswith("config_space_fuzz: FAILED")
    assert list((tmp_path / "artifacts").glob("config_space_fuzz-crash-*")), "the crashing input is kept"
    # Without the seeded bug the same target runs clean.
    clean = sanitizers.run_fuzzers(build, ["config_space_fuzz"], 1, 1, sanitizers.sanitizer_env(),
                                   tmp_path / "artifacts-clean", log=lambda _text: None)
    assert clean[0].failure is None and clean[0].executions


@pytest.mark.parametrize("bug, report", sorted(sanitizers.ASAN_CANARY.items()))
def test_a_gtest_under_asan_with_a_seeded_bug_fails_ctest_naming_it(tmp_path, bug, report):
    canary = _compile(tmp_path, paths.FUZZ / "sanitizer_canary.cpp", tmp_path / "build" / "fuzz" / "sanitizer_canary",
                      "address,undefined")
    (tmp_path / "build" / "CTestTestfile.cmake").write_text(
        f'add_test(seeded/{bug} "{canary}" "{bug}")\nadd_test(clean/none "{canary}" "none")\n')
    failures = sanitizers.run_ctest(tmp_path / "build", 1, sanitizers.sanitizer_env())
    assert failures == [f"build: ctest seeded/{bug} failed (log {tmp_path / 'build' / 'ctest.log'})"]
    assert report in (tmp_path / "build" / "ctest.log").read_text()
    # The stage's own self-check sees the same bug caught.
    assert sanitizers.canary_check(tmp_path / "build", {bug: report}, sanitizers.sanitizer_env()) == []


def test_a_data_race_fails_the_tsan_run_naming_it(tmp_path):
    build = tmp_path / "build-tsan"
    _compile(tmp_path, paths.FUZZ / "sanitizer_canary.cpp", build / "fuzz" / "sanitizer_canary", "thread")
    # Run as the TSan tests are (with a --gtest_filter), the canary takes its bug from the environment.
    assert sanitizers.run_gtests(build, {"sanitizer_canary": "*"}, sanitizers.sanitizer_env()) == []
    failures = sanitizers.run_gtests(build, {"sanitizer_canary": "*"},
                                     sanitizers.sanitizer_env({"VNETCT_CANARY_BUG": "data-race"}))
    assert len(failures) == 1 and failures[0].startswith("build-tsan: sanitizer_canary --gtest_filter=* exit ")
    assert "ThreadSanitizer reported: data race" in failures[0]
    assert sanitizers.canary_check(build, sanitizers.TSAN_CANARY, sanitizers.sanitizer_env()) == []
    # The canary that is not seeded passes the check's counterpart: a missing report is a failure.
    assert sanitizers.canary_check(build, {"none": "data race"}, sanitizers.sanitizer_env())
