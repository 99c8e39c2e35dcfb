"""`vnetct check-config`: exit status and output on the domains of
cases/teaming/domains (conformant, breaking a rule, bad input)."""

import json
import subprocess

from vnetct.core import paths

DOMAINS = paths.REPO / "cases" / "teaming" / "domains"


def _check(*args):
    return subprocess.run([str(paths.REPO / "vnetct"), "check-config", *args], capture_output=True, text=True,
                          timeout=300, check=False)


def test_conformant_domain_exits_0_and_prints_the_qemu_options():
    result = _check(str(DOMAINS / "valid-team.xml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid-team.xml: conformant" in result.stdout
    assert "-device vfio-pci,host=0000:3b:02.1,id=ua-hostdev0,bus=pci.2,addr=0x0,failover_pair_id=ua-backup0" \
        in result.stdout


def test_rule_breaking_domain_exits_1_naming_rule_line_and_attribute():
    result = _check(str(DOMAINS / "valid-team.xml"), str(DOMAINS / "transient-without-persistent.xml"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "transient-without-persistent.xml: NOT CONFORMANT" in result.stdout
    assert "TEAM-04 line 24 <teaming> persistent=: the persistent attribute is required" in result.stdout


def test_bad_input_exits_2_and_json_output_is_one_object_per_file():
    result = _check("--json", str(DOMAINS / "mac-mismatch.xml"), str(DOMAINS / "external-entity.xml"),
                    "/nonexistent.xml")
    assert result.returncode == 2, result.stdout + result.stderr
    objects = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [o.get("error") for o in objects] == [None, "Forbidden", "Unreadable"]
    assert [v["rule"] for v in objects[0]["violations"]] == ["TEAM-07"]
