"""`vnetct run` end to end against the real QEMU: the suite passes, results and
artifacts are written, and nothing of the run is left behind. Also the CLI's
answers to bad input. Needs root and the set-up that `vnetct test` does first."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vnetct.core import paths

VNETCT = [str(paths.REPO / "vnetct")]


def _run(args, out: Path, timeout=600):
    return subprocess.run([*VNETCT, "run", "--no-setup", "--out", str(out), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def _namespaces():
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def _qemu_pids():
    return sorted(p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p).startswith("/usr/bin/qemu-system"))


def _cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    out = tmp_path_factory.mktemp("out")
    result = _run([], out)
    return result, out, None, None


def _results(out: Path) -> dict:
    return json.loads(((out / "latest").resolve() / "results.json").read_text())


@pytest.mark.heavy("runs the default suite on real QEMU (about 200 s)")
def test_default_suite_passes_on_real_qemu_but_its_expected_failures(full_run):
    # The known deviations of this QEMU release (expectations/qemu-<release>.yaml) fail
    # as the file says, and do not fail the run; every other case passes.
    result, out, _, _ = full_run
    output = result.stdout[-4000:] + result.stderr[-2000:]
    results = _results(out)
    cases = results["cases"]
    expected = {case["id"] for case in cases if case.get("expectation") and case["expected"]}
    failed = {case["id"] for case in cases if case["outcome"] == "failed"}
    assert failed == expected == set(results["expectations"]["expected_failures"]), output
    assert not results["expectations"]["unexpected_passes"], output
    # Skips are allowed with their reason (e.g. the live-TAP series missing from this QEMU).
    assert all(case["outcome"] == "passed" or (case["outcome"] == "skipped" and case["reason"])
               for case in cases if case["id"] not in expected), output
    assert result.returncode == 0, output
    assert ", 0 errors" in result.stdout
    assert "\n[B] [" in result.stdout and len(results["lanes"]) >= 2, "the default run uses parallel lanes"


@pytest.mark.heavy("runs the default suite on real QEMU (about 200 s)")
def test_results_junit_and_artifacts_are_written(full_run):
    _, out, _, _ = full_run
    run_dir = (out / "latest").resolve()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["schema"] == "vnetct-results/1" and results["finished"]
    assert results["sut"]["accelerator"]["name"] in ("tcg", "kvm") and results["sut"]["accelerator"]["reason"]
    assert results["summary"]["total"] >= 9
    ids = {case["id"] for case in results["cases"]}
    assert {"failover/negotiation/primary-hidden-until-ack", "failover/pairing/master-standby-primary-share-mac",
            "failover/datapath/udp-echo-through-master", "failover/config/igb-primary-is-multifunction"} <= ids
    for case in results["cases"]:
        assert case["rules"] and (case["outcome"] in ("passed", "skipped") or case["expected"]), case
        for name, relative in case["artifacts"].items():
            assert (run_dir / relative).exists(), f"{case['id']}: artifact {name} missing at {relative}"
    artifacts = {name: path for case in results["cases"] for name, path in case["artifacts"].items()}
    assert "FAILOVER_NEGOTIATED" in (run_dir / artifacts["qmp-failover-pair"]).read_text()
    # A guest restored from a snapshot booted in its snapshot's saver: that console is kept beside its own.
    console = [artifacts[name] for name in ("boot-serial-failover-pair", "serial-failover-pair") if name in artifacts]
    assert "vnetct-init: starting agent" in "".join((run_dir / path).read_text() for path in console)
    assert (run_dir / "junit.xml").read_text().count("<testcase") == results["summary"]["total"]


@pytest.mark.heavy("runs the default suite on real QEMU (about 200 s)")
def test_nothing_of_the_run_is_left(full_run):
    # Only this run's own names count: other runs may be going on beside it. Each
    # lane (xdist worker) has its own short id; the socket dirs name them.
    result, out, _, _ = full_run
    run_dir = (out / "latest").resolve()
    qemu_lines = [line for path in run_dir.rglob("argv-*.txt") for line in path.read_text().splitlines()]
    short_ids = {word.split("/tmp/vnetct-", 1)[1][:6] for line in qemu_lines for word in line.split()
                 if "/tmp/vnetct-" in word}
    assert short_ids, "no QEMU command line recorded"
    for short_id in short_ids:
        assert not [n for n in _namespaces() if n.startswith(f"vnetct-{short_id}")]
        assert not [p for p in _qemu_pids() if f"/tmp/vnetct-{short_id}-" in _cmdline(p)]
        assert not list(Path("/tmp").glob(f"vnetct-{short_id}*"))


def test_bad_qemu_path_is_a_usage_error(tmp_path):
    result = _run(["--qemu", "/nonexistent/qemu"], tmp_path)
    assert result.returncode == 2
    assert "--qemu /nonexistent/qemu: not an executable file" in result.stderr


def test_unknown_profile_is_a_usage_error(tmp_path):
    result = _run(["--profile", "bogus"], tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "unknown profile" in result.stdout + result.stderr


def test_selection_matching_nothing_is_a_usage_error(tmp_path):
    result = _run(["-k", "no_such_case_anywhere"], tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no case matched" in result.stderr
