"""The SUT seam: profiles and their options, capabilities with reasons,
needs markers, the factory's trace check after every case (and its opt-out),
and the per-case timeout. Cases here are written to a temporary cases/ and
run against the reference SUT (no VM)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vnetct.core import paths
from vnetct.sut.base import CAPABILITIES, PROFILES, SutOptions, profile_named


def _run_cases(tmp_path: Path, body: str, *extra: str):
    cases = tmp_path / "cases"
    cases.mkdir(parents=True)
    (cases / "demo.py").write_text("import pytest\n\n" + body)
    run_dir = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "pytest", str(cases), "-p", "vnetct.plugin",
                             "--vnetct-profile=reference", f"--vnetct-run-dir={run_dir}", *extra,
                             "-p", "no:cacheprovider", "--import-mode=importlib", "-o", "python_files=*.py",
                             "-c", str(paths.REPO / "pytest.ini"), "--rootdir", str(tmp_path)],
                            capture_output=True, text=True, cwd=tmp_path, check=False, timeout=120)
    results_json = run_dir / "results.json"
    results = json.loads(results_json.read_text()) if results_json.exists() else None
    return result, results


def _outcome(results, name):
    return next(case for case in results["cases"] if case["nodeid"].endswith(name))


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(KeyError) as error:
        profile_named("kvm")
    assert "unknown profile" in error.value.args[0] and all(name in error.value.args[0] for name in PROFILES)


def test_profile_options_are_checked_without_anything_installed():
    assert PROFILES["qemu"].usage_error(["NegotiatedBeforeAck"], None).startswith("--mutation does not apply")
    assert PROFILES["reference"].usage_error(["NegotiatedBeforeAck"], None) is None
    assert PROFILES["vf"].usage_error([], None) == "--profile vf needs --host-config FILE"
    assert PROFILES["qemu"].usage_error([], Path("host.yaml")).startswith("--host-config only applies")


def test_the_reference_sut_gives_a_reason_for_every_capability_it_lacks():
    from vnetct.sut.reference import ReferenceSut

    sut = ReferenceSut(SutOptions("reference", "", [], None, lambda text: None))
    assert set(sut.missing()) <= set(CAPABILITIES)
    assert sut.lacks("datapath") and "no datapath" in sut.lacks("datapath")
    with pytest.raises(KeyError):
        sut.lacks("teleportation")
    with pytest.raises(ValueError, match="unknown"):
        ReferenceSut(SutOptions("reference", "", ["NoSuchBug"], None, lambda text: None))


def test_a_case_needing_an_unknown_capability_is_refused(tmp_path):
    result, _ = _run_cases(tmp_path, '@pytest.mark.rule("FO-NEG-02")\n@pytest.mark.needs("warp")\n'
                                     'def test_x(case):\n    pass\n')
    assert result.returncode == 4, result.stdout + result.stderr
    assert "needs unknown capability 'warp'" in result.stdout + result.stderr


def test_a_case_needing_what_the_sut_lacks_skips_with_the_suts_reason(tmp_path):
    result, results = _run_cases(tmp_path, '@pytest.mark.rule("FO-DATA-01")\n@pytest.mark.needs("datapath")\n'
                                           'def test_x(case):\n    raise AssertionError("ran")\n')
    case = _outcome(results, "test_x")
    assert case["outcome"] == "skipped", case
    assert case["reason"] == "the reference profile has no datapath (no TAP, no guest network stack)"


NEGOTIATION = '''
from vnetct.failover.guest import FailoverGuest, failover_spec

@pytest.mark.rule("FO-NEG-01")
{marker}
def test_negotiates(vm_factory, case):
    vm = vm_factory.vm_booted(failover_spec("demo"))
    FailoverGuest(vm).negotiate()
'''


def test_the_factory_judges_every_trace_after_the_case(tmp_path):
    # The model emits FAILOVER_NEGOTIATED before the guest acked: the case asserts
    # nothing about it itself, the factory's check must fail it naming the rule.
    result, results = _run_cases(tmp_path, NEGOTIATION.format(marker=""), "--vnetct-mutation=NegotiatedBeforeAck")
    case = _outcome(results, "test_negotiates")
    assert case["outcome"] == "failed", case
    violated = case["violations"][0]["rule"]
    assert violated.startswith("FO-NEG-") and f"trace checker: {violated} violated" in case["reason"], case
    clean, results = _run_cases(tmp_path / "clean", NEGOTIATION.format(marker=""))
    assert _outcome(results, "test_negotiates")["outcome"] == "passed", clean.stdout[-2000:]


def test_a_case_that_judges_its_trace_itself_opts_out_saying_why(tmp_path):
    marker = '@pytest.mark.no_trace_check("the case judges it itself")'
    result, results = _run_cases(tmp_path, NEGOTIATION.format(marker=marker), "--vnetct-mutation=NegotiatedBeforeAck")
    case = _outcome(results, "test_negotiates")
    assert case["outcome"] == "passed", case
    assert "violations" not in case and case["trace_check"] == "off: the case judges it itself"
    result, _ = _run_cases(tmp_path / "no-reason", NEGOTIATION.format(marker="@pytest.mark.no_trace_check"))
    assert result.returncode == 4 and "no_trace_check needs the reason" in result.stdout + result.stderr


def test_a_case_past_its_timeout_fails_saying_so(tmp_path):
    result, results = _run_cases(tmp_path, 'import threading\n\n@pytest.mark.rule("FO-NEG-02")\n'
                                           '@pytest.mark.case_timeout(1)\ndef test_hangs(case):\n'
                                           '    threading.Event().wait(20)  # nothing ever sets it\n')
    case = _outcome(results, "test_hangs")
    assert case["outcome"] == "failed", case
    assert "ran longer than its timeout of 1 s" in case["reason"]
    assert case["duration_s"] < 10
