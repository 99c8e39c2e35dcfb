"""The plugin refuses bad case declarations before anything runs."""

import subprocess
import sys
from pathlib import Path

from vnetct.core import paths


def _collect(tmp_path: Path, body: str):
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "demo.py").write_text("import pytest\n\n" + body)
    return subprocess.run([sys.executable, "-m", "pytest", str(cases), "-p", "vnetct.plugin", "--collect-only",
                           "--vnetct-list", "-p", "no:cacheprovider", "--import-mode=importlib",
                           "-o", "python_files=*.py", "--rootdir", str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path, check=False)


def test_unknown_rule_id_is_a_usage_error(tmp_path):
    result = _collect(tmp_path, '@pytest.mark.rule("FO-NOPE-01")\ndef test_x():\n    pass\n')
    assert result.returncode == 4, result.stdout + result.stderr
    assert "unknown rule id 'FO-NOPE-01'" in result.stderr


def test_case_without_rule_is_a_usage_error(tmp_path):
    result = _collect(tmp_path, 'def test_x():\n    pass\n')
    assert result.returncode == 4
    assert "no @pytest.mark.rule" in result.stderr


def test_listing_shows_ids_and_rule_sentences(tmp_path):
    result = _collect(tmp_path, '@pytest.mark.rule("FO-NEG-02")\ndef test_names_standby():\n    pass\n')
    assert result.returncode == 0, result.stderr
    assert "demo/names-standby" in result.stdout
    assert "FO-NEG-02: When the guest acks VIRTIO_NET_F_STANDBY" in result.stdout


def test_the_real_cases_all_declare_known_rules():
    result = subprocess.run([sys.executable, "-m", "pytest", str(paths.CASES), "-p", "vnetct.plugin",
                             "--collect-only", "--vnetct-list", "-p", "no:cacheprovider", "--import-mode=importlib",
                             "-o", "python_files=*.py", "--rootdir", str(paths.REPO)],
                            capture_output=True, text=True, cwd=paths.REPO, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failover/negotiation/primary-hidden-until-ack" in result.stdout


def test_a_bad_subject_is_a_usage_error_naming_the_case(tmp_path):
    result = _collect(tmp_path, '@pytest.mark.subject("referenc")\n@pytest.mark.rule("FO-NEG-01")\n'
                                'def test_x():\n    pass\n')
    assert result.returncode == 4, result.stdout + result.stderr
    assert "demo.py::test_x: bad @pytest.mark.subject('referenc'): give one of sut, reference" in result.stderr


def test_the_reference_cases_declare_their_subject():
    """Every case records its subject; the ones judging vnetct's own reference say so."""
    result = subprocess.run([sys.executable, "-m", "pytest", str(paths.CASES), "-p", "vnetct.plugin",
                             "--collect-only", "-q", "-p", "no:cacheprovider", "--import-mode=importlib",
                             "-o", "python_files=*.py", "--rootdir", str(paths.REPO), "-m", "subject",
                             "--vnetct-list"],
                            capture_output=True, text=True, cwd=paths.REPO, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    listed = result.stdout
    for reference in ("livetap/reference-backend/", "livetap/configuration/", "teaming/libvirt-xml/domain-verdict",
                      "teaming/libvirt-xml/libvirt-agrees", "failover/group-id/pairing-by-group-id",
                      "failover/group-id/malformed-config-space-is-an-error"):
        assert reference in listed, reference
    for sut in ("teaming/libvirt-xml/qemu-accepts-the-team", "failover/group-id/qemu-offers-failover-group-id",
                "failover/negotiation/"):
        assert sut not in listed, sut


def test_fresh_boot_without_its_reason_is_a_usage_error(tmp_path):
    result = _collect(tmp_path, '@pytest.mark.rule("FO-NEG-01")\n@pytest.mark.fresh_boot\ndef test_x():\n    pass\n')
    assert result.returncode == 4, result.stdout + result.stderr
    assert "fresh_boot needs the reason" in result.stderr


def test_collection_order_long_then_guests_then_guestless_then_quiet(tmp_path):
    """The order the lanes take cases in: long (protocol timers), then those with guests
    (the vm_factory fixture), then those without, the CPU-quiet ones last."""
    body = ('@pytest.fixture\ndef vm_factory():\n    return None\n\n'
            '@pytest.fixture\ndef pair(vm_factory):\n    return None\n\n'
            '@pytest.mark.cpu_quiet("bench")\n@pytest.mark.rule("FO-NEG-01")\ndef test_quiet():\n    pass\n\n'
            '@pytest.mark.rule("FO-NEG-01")\ndef test_guestless():\n    pass\n\n'
            '@pytest.mark.rule("FO-NEG-01")\ndef test_shared_guest(pair):\n    pass\n\n'
            '@pytest.mark.rule("FO-NEG-01")\ndef test_guest(vm_factory):\n    pass\n\n'
            '@pytest.mark.long("a 30 s timer")\n@pytest.mark.rule("FO-NEG-01")\ndef test_long(vm_factory):\n    pass\n')
    result = _collect(tmp_path, body)
    assert result.returncode == 0, result.stdout + result.stderr
    order = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("demo/")]
    assert order == ["demo/long", "demo/shared-guest", "demo/guest", "demo/guestless", "demo/quiet"], order
