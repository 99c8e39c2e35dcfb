"""`vnetct certify`: the summary over runs (median, worst, verdict and its
reasons) from hand-made results, the ethtool parsing, the CLI's answers to
bad input, and one real certification of two runs of the ACPI migration case
against QEMU (needs root and the set-up that `vnetct test` does first)."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from vnetct.cli import certify
from vnetct.core import paths
from vnetct.report import certification

LIMITS = certification.load_thresholds(None)


def _run_dir(root: Path, name: str, cases, sut=None) -> str:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text(json.dumps({
        "run_id": name, "summary": {"passed": len(cases)}, "cases": cases,
        "sut": sut or {"qemu_version": "10.0.2", "guest_kernel": "6.12", "accelerator": {"name": "tcg"}}}))
    return str(run_dir)


def _case(outcome="passed", **values):
    units = {"unplug_latency": "s", "replug_carrying_latency": "s", "qemu_downtime": "ms", "switchover_lost": "",
             "longest_loss_window": "ms"}
    metrics = {name: {"value": value, "unit": units.get(name, "")} for name, value in values.items()}
    return {"id": "failover/migrate/out-and-in/unplug-migrate-replug/acpi", "outcome": outcome, "metrics": metrics}


ALL = {"unplug_latency": 0.13, "replug_carrying_latency": 1.4, "qemu_downtime": 70, "switchover_lost": 100,
       "longest_loss_window": 380}


def _summary(tmp_path, cases_per_run, limits=LIMITS, runs_asked=None):
    runs = [{"index": i + 1, "exit": 0, "dir": _run_dir(tmp_path, f"r{i}", cases)}
            for i, cases in enumerate(cases_per_run)]
    env = certify.environment(runs, "qemu", None)
    return certify.summarise(runs, limits, env, False, {"runs_asked": runs_asked or len(runs), "keyword": "x",
                                                        "qemu": "q", "profile": "qemu", "thresholds": None,
                                                        "command": "./vnetct certify"})


def test_median_and_worst_over_runs_and_certified_when_all_within(tmp_path):
    summary = _summary(tmp_path, [[_case(**{**ALL, "qemu_downtime": d})] for d in (60, 90, 75)])
    downtime = next(f for f in summary["figures"] if f["name"] == "downtime")
    assert (downtime["count"], downtime["median"], downtime["worst"]["value"]) == (3, 75, 90)
    assert downtime["worst"]["run"] == 2
    assert summary["verdict"] == "certified" and summary["reasons"] == []
    assert summary["environment"]["pf"].startswith("none")
    assert summary["fingerprint"] == certification.canonical_hash(summary["environment"])


def test_a_value_over_its_limit_a_failed_case_and_missing_figures_each_give_a_reason(tmp_path):
    over = _summary(tmp_path / "a", [[_case(**ALL)], [_case(**{**ALL, "qemu_downtime": 450})]])
    assert over["verdict"] == "not certified"
    assert any(r.startswith("downtime: 1 of 2 values over 300") and "run 2" in r for r in over["reasons"])
    failed = _summary(tmp_path / "b", [[_case("failed", **ALL)]])
    assert any("not every case passed" in r for r in failed["reasons"])
    partial = _summary(tmp_path / "c", [[_case(unplug_latency=0.1)]])
    assert any(r == "replug_latency: no selected case measured it" for r in partial["reasons"])
    short = _summary(tmp_path / "d", [[_case(**ALL)]], runs_asked=3)
    assert "1 of 3 runs have results" in short["reasons"]


def test_stricter_thresholds_change_the_verdict(tmp_path):
    strict = dict(LIMITS, unplug_latency=0.1)
    summary = _summary(tmp_path, [[_case(**ALL)]], limits=strict)
    assert summary["verdict"] == "not certified"
    assert next(f for f in summary["figures"] if f["name"] == "unplug_latency")["verdict"] == "exceeded"


def test_sut_differences_between_runs_are_recorded(tmp_path):
    runs = [{"index": 1, "exit": 0, "dir": _run_dir(tmp_path, "a", [_case(**ALL)], {"qemu_version": "10.0.2"})},
            {"index": 2, "exit": 0, "dir": _run_dir(tmp_path, "b", [_case(**ALL)], {"qemu_version": "10.1.0"})}]
    assert certify.environment(runs, "qemu", None)["sut_differs_between_runs"] == ["qemu_version"]


def test_ethtool_output_is_parsed():
    text = ("driver: ixgbe\nversion: 6.12.0\nfirmware-version: 0x800009e0, 1.3089.0\nexpansion-rom-version: \n"
            "bus-info: 0000:3b:00.0\nsupports-statistics: yes\n")
    info = certify.parse_ethtool(text)
    assert info["driver"] == "ixgbe" and info["firmware-version"] == "0x800009e0, 1.3089.0"
    assert info["bus-info"] == "0000:3b:00.0" and info["expansion-rom-version"] == ""
    assert "error" in certify.ethtool_info("vnetct-no-such-netdev0")


def _certify(*args, timeout=60):
    return subprocess.run([str(paths.REPO / "vnetct"), "certify", "--no-setup", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.mark.parametrize("args,message", [
    (["--runs", "0"], "--runs 0: must be at least 1"),
    (["--profile", "reference"], "certify needs a profile whose runs give figures (with a datapath): qemu, vf"),
    (["--profile", "vf"], "--profile vf needs --host-config FILE"),
    (["--profile", "kvm"], "--profile kvm: unknown profile")])
def test_bad_usage_exits_2(args, message):
    result = _certify(*args)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_bad_thresholds_file_exits_2(tmp_path):
    bad = tmp_path / "t.json"
    bad.write_text('{"downtime": "fast"}')
    result = _certify("--thresholds", str(bad))
    assert result.returncode == 2 and "downtime: the limit must be a number" in result.stderr, result.stderr


@pytest.mark.heavy("certifies two real runs (about 37 s)")
def test_two_real_runs_are_certified_with_their_figures(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    result = _certify("--runs", "2", "-k", "out-and-in/unplug-migrate-replug/acpi", "--out", str(tmp_path),
                      timeout=600)
    certify_dir = next(tmp_path.glob("certify-*"))
    summary = json.loads((certify_dir / "certification.json").read_text())
    assert len([r for r in summary["runs"] if r["dir"]]) == 2, result.stdout[-3000:]
    for figure in summary["figures"]:
        assert figure["count"] == 2, f"{figure['name']}: {figure['values']}"
        assert figure["median"] is not None and figure["worst"]["value"] >= figure["median"]
    assert summary["environment"]["guest_primary_driver"] == ["e1000e"]
    assert summary["environment"]["qemu_version"] and summary["environment"]["guest_kernel"]
    html = (certify_dir / "report.html").read_text()
    assert "Across 2 runs" in html and summary["fingerprint"] in html
    # The verdict follows the figures: exit 0 exactly when certified.
    assert (result.returncode == 0) == (summary["verdict"] == "certified"), result.stdout[-2000:]
    assert f"verdict: {summary['verdict'].upper()}" in result.stdout
