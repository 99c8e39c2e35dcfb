"""The harness's self-test: the failover cases against the reference model,
clean and with each deliberate bug. A bug must make a case fail that names
the rule the bug breaks."""

import json
import subprocess
import time

import pytest

from vnetct.core import paths
from vnetct.core.native import vnetct_native

# mutation -> the rule ids a failed case must name (results.json violated_rules)
CAUGHT = {
    # FAILOVER_NEGOTIATED (then the plug) before the ack: the event is the first thing
    # the host does wrong, and the trace checker names the rule that owes it.
    "NegotiatedBeforeAck": {"FO-NEG-01"},
    "PlugPrimaryWithoutStandbyAck": {"FO-NEG-03"},
    "LeaveWaitUnplugEarly": {"FO-MIG-SRC-03"},
    "ForgetReplugAfterCancel": {"FO-MIG-SRC-05"},
    "NoUnplugPrimaryEvent": {"FO-MIG-SRC-01"},
    "NoReplugOnTarget": {"FO-MIG-TGT-02"},
}


def _run(tmp_path, *args):
    started = time.monotonic()
    result = subprocess.run([str(paths.REPO / "vnetct"), "run", "--no-setup", "--profile", "reference",
                             "--out", str(tmp_path), *args], capture_output=True, text=True, timeout=120,
                            check=False)
    results = json.loads(((tmp_path / "latest").resolve() / "results.json").read_text())
    return result, results, time.monotonic() - started


def _failed_rules(results):
    """The rules the failed cases named as violated (not merely cited)."""
    return {rule for case in results["cases"] if case["outcome"] in ("failed", "error")
            for rule in case["violated_rules"]}


def test_clean_model_passes_every_failover_case_in_seconds(tmp_path):
    result, results, elapsed = _run(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert elapsed < 10, f"the reference profile took {elapsed:.1f} s"
    outcomes = {case["id"]: case["outcome"] for case in results["cases"]}
    # Cases that need what a model has not (a datapath, a guest that delays or
    # refuses an eject, a target process) skip there, each saying so.
    cannot_run_on_a_model = {"failover/datapath/udp-echo-through-master", "failover/migrate/abort/wait-unplug",
                             "failover/migrate/abort/target-killed",
                             "failover/migrate/unreleased/wait-unplug-holds-until-cancel",
                             "livetap/qemu-adapter/local-migration-loss/same-tap-fd",
                             "livetap/qemu-adapter/local-migration-loss/new-tap"}
    # The live-TAP cases need real TAPs, processes and traffic, or a QEMU to probe, as do the QEMU and
    # libvirt checks of teaming, the group-id probe and the announce frames on the wire: not in this
    # fast profile.
    cannot_run_on_a_model |= {case_id for case_id in outcomes
                              if case_id.startswith(("livetap/reference-backend/", "livetap/configuration/",
                                                     "livetap/qemu-adapter/",
                                                     "teaming/libvirt-xml/qemu-accepts-the-team",
                                                     "teaming/libvirt-xml/libvirt-agrees",
                                                     "failover/group-id/qemu-offers",
                                                     "failover/migrate/announce/"))}
    for case_id in cannot_run_on_a_model:
        assert outcomes.pop(case_id) == "skipped", case_id
    assert outcomes and set(outcomes.values()) == {"passed"}, outcomes
    assert results["sut"]["mutations"] == []
    # Every case says what it judges; no rule is violated; every known rule has its row.
    assert {case["subject"] for case in results["cases"]} == {"sut", "reference", "exploration"}
    assert not [entry["id"] for entry in results["rules"] if entry["sut"]["verdict"] == "violated"]
    known = vnetct_native.rules()
    assert [entry["id"] for entry in results["rules"]] == [rule["id"] for rule in known]


def test_every_mutation_of_the_model_is_listed():
    assert set(CAUGHT) == set(vnetct_native.mutation_names())


@pytest.mark.parametrize("mutation", sorted(CAUGHT))
def test_each_model_bug_is_caught_with_its_rule(tmp_path, mutation):
    result, results, _ = _run(tmp_path, "--mutation", mutation)
    assert result.returncode == 1, result.stdout[-3000:]
    assert results["sut"]["mutations"] == [mutation]
    assert CAUGHT[mutation] <= _failed_rules(results), \
        f"{mutation} should fail a case naming {CAUGHT[mutation]}; failed: {_failed_rules(results)}"
    violated = {entry["id"] for entry in results["rules"] if entry["sut"]["verdict"] == "violated"}
    assert CAUGHT[mutation] <= violated, f"the rules table should mark {CAUGHT[mutation]} violated: {violated}"


# The real-guest counterparts of QEMU's qtest failover cases: the mutation that breaks
# the rule a counterpart judges fails that very case, naming the rule. (migrate/off/abort's
# counterpart has no model mutation that touches it: its seeded fault is the real-QEMU
# fault unplug-unnegotiated-primary, vnetct.faults.catalog.)
QTEST_COUNTERPARTS = [
    ("NoUnplugPrimaryEvent", "failover/hotplug/hotplugged-standby-negotiates-then-primary-is-plugged-at-once",
     "FO-MIG-SRC-01"),
    ("LeaveWaitUnplugEarly", "failover/hotplug/hotplugged-standby-negotiates-then-primary-is-plugged-at-once",
     "FO-MIG-SRC-03"),
    ("PlugPrimaryWithoutStandbyAck", "failover/migrate/not-negotiated/cancelled-keeps-primary-hidden", "FO-NEG-03"),
]


@pytest.mark.parametrize("mutation,case_id,rule", QTEST_COUNTERPARTS)
def test_each_qtest_counterpart_fails_on_the_mutation_of_its_rule(tmp_path, mutation, case_id, rule):
    result, results, _ = _run(tmp_path, "-j", "1", "--mutation", mutation, "-k", case_id.rsplit("/", 1)[1])
    outcomes = {case["id"]: case for case in results["cases"]}
    assert outcomes[case_id]["outcome"] == "failed", result.stdout[-3000:]
    assert rule in outcomes[case_id]["violated_rules"], outcomes[case_id]


def test_mutation_needs_the_reference_profile(tmp_path):
    result = subprocess.run([str(paths.REPO / "vnetct"), "run", "--no-setup", "--mutation", "NegotiatedBeforeAck",
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "--mutation does not apply to --profile qemu" in result.stderr
