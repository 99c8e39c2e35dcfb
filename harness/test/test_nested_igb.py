"""The nested emulated-igb path's harness code (vnetct.nested, issue 18): the
host profile files generated for L1's two PFs parse and are checked against
what L1 reports; L2's snapshot key follows every input; a partial or corrupt
snapshot is never restored; the enslave judgement fails on a primary that
net_failover cannot take; L1's and L2's command lines. The heavy tests run
L1 with L2 restored from its snapshot (made first if the cache has none)
until igbvf is enslaved, and once with a wrong VF MAC, which must fail."""

from __future__ import annotations

import dataclasses
import os

import pytest

from vnetct.nested import enslave, host_profiles, l1, l2, l2_snapshot
from vnetct.sut import host_profile
from vnetct.vm.snapshot import SnapshotError

PAIR_MAC = "52:54:00:6f:55:cc"


def l1_report(netdevs=("eth0", "eth1"), vf_mac=PAIR_MAC):
    """L1's console as its /init prints it for the default plan."""
    plans = host_profiles.default_plan()
    lines = [f"NESTED 1.0{i} pf 0000:0{i + 1}:00.0 {name} mac={plan.mac} totalvfs=7"
             for i, (name, plan) in enumerate(zip(netdevs, plans))]
    lines += [f"NESTED 2.0{i} vf-mac {name} vf=0 mac={vf_mac}" for i, name in enumerate(netdevs)]
    return lines


def test_the_generated_host_profiles_parse_and_name_what_l1_has(tmp_path):
    plans = host_profiles.default_plan()
    files = host_profiles.write(tmp_path, plans, PAIR_MAC)
    assert sorted(files) == ["source", "target"]
    source, target = host_profile.load(files["source"]), host_profile.load(files["target"])
    assert (source.pf, source.num_vfs, source.vf.index, source.vf.mac, source.vf.vfio) == ("eth0", 1, 0, PAIR_MAC, True)
    assert (target.pf, target.standby.bridge) == ("eth1", "nbr1")
    assert host_profiles.check_against_l1(files, plans, l1_report()) == []


def test_the_host_profile_check_fails_when_l1_has_something_else(tmp_path):
    plans = host_profiles.default_plan()
    files = host_profiles.write(tmp_path, plans, PAIR_MAC)
    swapped = host_profiles.check_against_l1(files, plans, l1_report(netdevs=("eth1", "eth0")))
    assert len(swapped) == 2 and "pf.netdev is eth0, but L1 named the source PF" in swapped[0]
    wrong_vf = host_profiles.check_against_l1(files, plans, l1_report(vf_mac="52:54:00:00:00:01"))
    assert "vf.mac 52:54:00:6f:55:cc, but L1 read VF 0 of eth0 as 52:54:00:00:00:01" in wrong_vf[0]
    assert host_profiles.check_against_l1(files, plans, []) == ["L1 reported no igb PF"]
    one_pf = host_profiles.check_against_l1(files, plans, l1_report()[:1] + l1_report()[2:])
    assert one_pf == [f"target: no PF with MAC {plans[1].mac} in L1 (L1 has eth0 {plans[0].mac})"]


def inputs(**changes):
    base = l2_snapshot.Inputs(kernel_sha256="k" * 64, initramfs_sha256="i" * 64,
                              saver_argv=l2.argv(l2.L2Config(), restored=False),
                              restored_argv=l2.argv(l2.L2Config(), restored=True), qemu_sha256="q" * 64)
    return dataclasses.replace(base, **changes)


def test_the_snapshot_key_follows_every_input():
    key = inputs().key()
    assert key == inputs().key() and len(key) == 64
    other_l2 = l2.L2Config(mem_mib=64)
    changed = [inputs(kernel_sha256="K" * 64), inputs(initramfs_sha256="I" * 64), inputs(qemu_sha256="Q" * 64),
               inputs(saver_argv=l2.argv(other_l2, restored=False)),
               inputs(restored_argv=l2.argv(other_l2, restored=True)),
               inputs(restored_argv=l2.argv(dataclasses.replace(l2.L2Config(), mac="52:54:00:6f:55:cd"), True))]
    keys = {item.key() for item in changed}
    assert len(keys) == len(changed) and key not in keys


def _stored(tmp_path, content=b"QEVM" + bytes(range(256)) * 40):
    cache = l2_snapshot.cache("10.0.2", root=tmp_path / "cache")
    received = tmp_path / "received"
    received.write_bytes(content)
    digest = l2_snapshot.file_sha256(received)
    snapshot = l2_snapshot.store(cache, inputs(), received, len(content), digest, {"steps_s": {}})
    return cache, snapshot


def test_a_stored_snapshot_is_found_by_its_key(tmp_path):
    cache, snapshot = _stored(tmp_path)
    assert cache.find(inputs().key()) == snapshot
    assert cache.find(inputs(qemu_sha256="Q" * 64).key()) is None


def test_a_partial_or_corrupt_snapshot_is_never_restored(tmp_path):
    cache, snapshot = _stored(tmp_path)
    content = snapshot.state.read_bytes()
    snapshot.state.write_bytes(content[:-1])  # cut short
    assert cache.find(inputs().key()) is None
    snapshot.state.write_bytes(content[:100] + bytes([content[100] ^ 1]) + content[101:])  # same size, one bit
    assert cache.find(inputs().key()) is None
    snapshot.state.write_bytes(content)
    assert cache.find(inputs().key()) is not None
    snapshot.meta.unlink()  # a store that stopped before its meta
    assert cache.find(inputs().key()) is None


def test_what_did_not_arrive_as_l1_saved_it_is_not_kept(tmp_path):
    cache = l2_snapshot.cache("10.0.2", root=tmp_path / "cache")
    received = tmp_path / "received"
    received.write_bytes(b"QEVM partial")
    with pytest.raises(SnapshotError, match=r"L1 saved 100 bytes, 12 arrived"):
        l2_snapshot.store(cache, inputs(), received, 100, "0" * 64, {})
    with pytest.raises(SnapshotError, match=r"L1's sha256 0{64}, [0-9a-f]{64} arrived"):
        l2_snapshot.store(cache, inputs(), received, 12, "0" * 64, {})
    assert cache.find(inputs().key()) is None and not list((tmp_path / "cache").glob("*/meta.json"))


def netdev(name, driver, master, mac):
    return {"name": name, "driver": driver, "master": master, "mac": mac, "pci_address": None}


def report(*netdevs):
    return {"id": enslave.REPORT_ID, "ok": True, "result": {"netdevs": list(netdevs)}}


FAILOVER = [netdev("eth0", "net_failover", None, PAIR_MAC), netdev("eth1", "virtio_net", "eth0", PAIR_MAC)]


def test_igbvf_enslaved_under_the_failover_master_is_judged_enslaved():
    lines = [{"event": "hello"}, {"event": "netdev-added", "name": "eth2", "mac": PAIR_MAC, "master": None},
             {"event": "netdev-changed", "name": "eth2", "master": "eth0", "changes": ["master"]}]
    assert enslave.judge(lines, PAIR_MAC) is None, "not yet: no report"
    found = enslave.judge(lines + [report(*FAILOVER, netdev("eth2", "igbvf", "eth0", PAIR_MAC))], PAIR_MAC)
    assert found == enslave.Enslaved("eth2", "eth0", PAIR_MAC, "igbvf", None)


def test_a_primary_net_failover_cannot_take_fails_the_judgement():
    with pytest.raises(enslave.EnslaveFailed, match="eth2 appeared with MAC 52:54:00:00:00:01, not the failover"):
        enslave.judge([{"event": "netdev-added", "name": "eth2", "mac": "52:54:00:00:00:01", "master": None}], PAIR_MAC)
    with pytest.raises(enslave.EnslaveFailed, match="igbvf netdev eth2 is not enslaved"):
        enslave.judge([report(*FAILOVER, netdev("eth2", "igbvf", None, PAIR_MAC))], PAIR_MAC)
    with pytest.raises(enslave.EnslaveFailed, match="no igbvf netdev"):
        enslave.judge([report(*FAILOVER, netdev("eth2", "e1000e", "eth0", PAIR_MAC))], PAIR_MAC)
    with pytest.raises(enslave.EnslaveFailed, match="master eth1 is not the failover master"):
        enslave.judge([report(*FAILOVER, netdev("eth2", "igbvf", "eth1", PAIR_MAC))], PAIR_MAC)


def test_agent_lines_are_the_relayed_json_objects():
    console = ["NESTED 1.0 l1-init", 'L2AGENT {"event":"hello"}', "L2AGENT {cut", 'L2AGENT [1]', "L2 text"]
    assert enslave.agent_lines(console) == [{"event": "hello"}]


def test_the_saver_has_no_primary_and_the_restored_l2_has_the_vf_hidden_until_negotiation():
    saver, restored = l2.argv(l2.L2Config(), restored=False), l2.argv(l2.L2Config(), restored=True)
    assert not any("vfio-pci" in word for word in saver) and "-incoming" not in saver
    assert restored[:len(saver)] == saver, "the same machine, with the primary and -incoming after it"
    assert restored[len(saver):] == ["-device", f"vfio-pci,host={l2.VF_PLACEHOLDER},id=hostdev0,bus=root2,"
                                     "failover_pair_id=net0", "-incoming", "defer"]
    assert "vfio-pci,host=$SOURCE_VF,id=hostdev0" in l2.shell_words(restored)
    with pytest.raises(ValueError, match="holds a '\\$'"):
        l2.shell_words(["echo", "$HOME"])


def test_l1_has_two_pfs_on_the_wire_the_agent_port_and_a_state_port_only_when_saving(tmp_path):
    config = l1.L1Config()
    saving = l1.argv(tmp_path / "bzImage", tmp_path / "initrd", config, "save", [7, 8], tmp_path / "a.sock",
                     tmp_path / "state")
    joined = " ".join(saving)
    assert "igb,netdev=pf0net,bus=root1,id=pf0,mac=52:54:00:12:00:10" in joined and "tap,id=pf1net,fd=8" in joined
    assert f"socket,id=hostagent,path={tmp_path / 'a.sock'},server=on,wait=off" in joined
    assert f"name={l1.STATE_PORT}" in joined and "vnetct.l2=save" in joined
    restoring = " ".join(l1.argv(tmp_path / "bzImage", tmp_path / "initrd", config, "restore", [7, 8],
                                 tmp_path / "a.sock", None, 35007755))
    assert l1.STATE_PORT not in restoring and "vnetct.l2=restore vnetct.l2bytes=35007755" in restoring
    with pytest.raises(ValueError, match="2 PFs need as many TAP fds, got 1"):
        l1.argv(tmp_path / "k", tmp_path / "i", config, "save", [7], tmp_path / "a.sock", None)
    with pytest.raises(ValueError, match="L1 mode 'boot'"):
        l1.argv(tmp_path / "k", tmp_path / "i", config, "boot", [7, 8], tmp_path / "a.sock", None)


def test_l1_init_sets_each_sides_vf_and_the_fault_s_mac():
    init = l1.render_init(l1.L1Config())
    assert "vf_setup source eth0 1 0 52:54:00:6f:55:cc\nSOURCE_VF=$VF\nvf_setup target eth1 1 0" in init
    assert "{" + "l2_save}" not in init and "-incoming defer" in init
    faulty = l1.render_init(l1.L1Config(vf_mac="52:54:00:00:00:01"))
    assert "vf_setup source eth0 1 0 52:54:00:00:00:01" in faulty


# -- heavy: L1 and L2 for real ----------------------------------------------------------------------------------

def _prepared(tmp_path, config):
    from vnetct.core import paths
    from vnetct.nested import runner
    from vnetct.setup import nested_kernel

    kernel = nested_kernel.cached()
    if kernel is None:
        pytest.skip("the nested kernel is not built for the installed linux-source-6.12 and this fragment "
                    "(/usr/bin/python3 -m vnetct.setup.nested_kernel builds it, ~30 min)")
    if not paths.AGENT_BINARY.is_file():
        pytest.skip(f"no guest agent at {paths.AGENT_BINARY} (the C++ build makes it)")
    if os.geteuid() != 0:
        pytest.skip("the wire's namespace and TAPs need root")
    return runner.prepare(config, kernel.bzimage, tmp_path / "prepared", log=lambda text: None)


def _snapshot(prepared, tmp_path):
    from vnetct.nested import runner
    from vnetct.sut.qemu import qemu_version

    snapshots = l2_snapshot.cache(qemu_version(l1.QEMU))
    return runner.ensure_snapshot(prepared, snapshots, tmp_path / "save", timeout=900, log=lambda text: None)[0]


@pytest.mark.heavy("runs L1 (TCG) restoring L2 from its snapshot (boots L2 to make it when none is cached)")
def test_l2_restored_in_l1_gets_igbvf_enslaved_under_net_failover(tmp_path):
    from vnetct.nested import runner

    prepared = _prepared(tmp_path, l1.L1Config())
    record = runner.restore(prepared, _snapshot(prepared, tmp_path), tmp_path / "restore", timeout=600,
                            log=lambda text: None)
    assert record["enslaved"]["driver"] == "igbvf" and record["enslaved"]["mac"] == PAIR_MAC
    assert record["host_profile_problems"] == [] and record["wire"]["removed"] is True
    assert {"l2-restored", "l2-agent-hello", "done"} <= set(record["marks"])


@pytest.mark.heavy("runs L1 (TCG) restoring L2 from its snapshot with a wrong VF MAC")
def test_a_vf_with_another_mac_than_the_pair_fails_the_enslave_check(tmp_path):
    from vnetct.nested import runner

    prepared = _prepared(tmp_path, l1.L1Config(vf_mac="52:54:00:00:00:01"))
    with pytest.raises(runner.NestedRunFailed, match=r"EnslaveFailed: netdev \S+ appeared with MAC "
                                                     r"52:54:00:00:00:01, not the failover pair's") as failed:
        runner.restore(prepared, _snapshot(prepared, tmp_path), tmp_path / "restore", timeout=600,
                       log=lambda text: None)
    assert failed.value.record["wire"]["removed"] is True
    assert any("vf.mac 52:54:00:6f:55:cc, but L1 read VF 0 of eth0 as 52:54:00:00:00:01" in problem
               for problem in failed.value.record["host_profile_problems"])


def test_l1_console_failures_are_recognised():
    from vnetct.nested.session import FAILURE_RE

    for line in ("[    1.68] Initramfs unpacking failed: write error", "NESTED 6.0 failed l2-state-incomplete",
                 "L2 qemu-system-x86_64: Unknown combination of migration flags: 0x0", "Kernel panic - not syncing"):
        assert FAILURE_RE.search(line), line
    for line in ("L2 qemu-system-x86_64: warning: hub 0 is not connected to host network", "NESTED 7.7 l2-loaded"):
        assert not FAILURE_RE.search(line), line
