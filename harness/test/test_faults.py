"""The seeded host faults (vnetct.faults): the catalog's plans against the
interposer (its own tests: harness/test/test_qmp_interposer.py and
host_agent/test/qmp_interposer_test.cpp); argv rewriting; and the quick subset
of `./vnetct selftest` on real QEMU, where each fault must make a case fail
naming its rule."""

import json
import os
import subprocess

import pytest

from vnetct.core import paths
from vnetct.core.native import vnetct_native
from vnetct.faults.catalog import FAULTS, STANDBY_ID


def test_every_catalog_plan_is_accepted_by_the_interposer(tmp_path):
    """The catalog's QMP plans are valid for host_agent's interposer (a bad
    plan would make every seeded run fail at start, naming no rule)."""
    for fault in FAULTS.values():
        for plan in (fault.source_plan, fault.target_plan):
            if plan is not None:
                interposer = vnetct_native.QmpInterposer.start(str(tmp_path / "qmp.sock"),
                                                               str(tmp_path / "qemu.sock"), plan, "")
                interposer.stop()


def test_argv_rewriting_touches_only_the_named_property():
    rewrite = FAULTS["standby-failover-off"].argv
    argv = ["qemu", "-device", "virtio-net-pci,netdev=hn0,id=net1,failover=on", "-device", "e1000e,failover=on"]
    assert rewrite(argv) == ["qemu", "-device", "virtio-net-pci,netdev=hn0,id=net1,failover=off", "-device",
                             "e1000e,failover=on"]


def test_the_catalog_names_the_failover_cases_devices():
    from vnetct.failover.guest import STANDBY_ID as CASES_STANDBY
    assert STANDBY_ID == CASES_STANDBY


@pytest.mark.skipif(os.geteuid() != 0, reason="real QEMU runs need root (namespaces, TAPs)")
@pytest.mark.heavy("runs the quick selftest on real QEMU (about 75 s)")
def test_the_quick_selftest_catches_each_fault_with_its_rule(tmp_path):
    """./vnetct selftest --quick on real QEMU: the baseline passes, and each
    quick fault makes a case fail naming its rule within the time bound."""
    result = subprocess.run([str(paths.REPO / "vnetct"), "selftest", "--quick", "--no-setup", "--out",
                             str(tmp_path)], capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = json.loads(next(tmp_path.glob("selftest-*/selftest.json")).read_text())
    assert [fault["fault"] for fault in summary["faults"]] == [f.name for f in FAULTS.values() if f.quick]
    for fault in summary["faults"]:
        assert fault["ok"] and fault["caught"] >= 1, fault
        named = [case for case in fault["cases"] if fault["rule"] in (case["violated_rules"] or [])]
        assert all(case["beyond_normal_s"] is None or case["beyond_normal_s"] <= 15 for case in named), fault
