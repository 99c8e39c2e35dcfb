"""Profile vf without SR-IOV hardware: the host profile file's errors, the VM
spec with the VF as primary, the early and clean failure on this machine, and
the Python set-up/restore against a fake sysfs tree (VNETCT_SYSFS_ROOT)."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from vnetct.core import paths
from vnetct.sut import sriov
from vnetct.failover.guest import failover_spec
from vnetct.vm.guest import Accelerator, build_argv
from vnetct.sut.host_profile import HostProfileError, load
from vnetct.core.native import vnetct_native
from vnetct.sut.vf_wire import vf_spec

EXAMPLE = paths.REPO / "examples" / "host-vf.yaml"
VNETCT = str(paths.REPO / "vnetct")
PF_ADDRESS = "0000:3b:00.0"

GOOD = """\
pf:
  netdev: enp59s0f0
  num_vfs: 4
vf:
  index: 1
  mac: "52:54:00:10:20:30"
standby:
  bridge: br0
"""


def _profile_error(tmp_path, text):
    path = tmp_path / "host.yaml"
    path.write_text(text)
    with pytest.raises(HostProfileError) as error:
        load(path)
    return str(error.value).replace(str(tmp_path) + "/", "")


# --- the file -------------------------------------------------------------------

def test_example_file_is_valid():
    profile = load(EXAMPLE)
    assert profile.pf == "enp59s0f0" and profile.num_vfs == 4
    assert profile.vf_indices() == [0, 1]
    assert profile.vf.mac == "52:54:00:6f:55:cc" and profile.vf.trust is True and profile.vf.spoofchk is False
    assert profile.standby.bridge == "br0"


def test_mac_is_read_as_written_not_as_a_base_60_integer(tmp_path):
    (tmp_path / "host.yaml").write_text(GOOD.replace('"52:54:00:10:20:30"', "52:54:00:10:20:30"))
    assert load(tmp_path / "host.yaml").vf.mac == "52:54:00:10:20:30"


@pytest.mark.parametrize("change, message", [
    (("index: 1", "index: 4"), "host.yaml:5: vf.index: expected an integer 0..3 (pf.num_vfs is 4), got 4"),
    (("index: 1", "index: x"), "host.yaml:5: vf.index: expected an integer 0..3 (pf.num_vfs is 4), got 'x'"),
    (("num_vfs: 4", "num_vfs: 0"), "host.yaml:3: pf.num_vfs: expected an integer 1..256, got 0"),
    (("num_vfs: 4", "num_vfs: 4.5"), "host.yaml:3: pf.num_vfs: expected an integer 1..256, got '4.5'"),
    (("  mac:", "  mack:"), "host.yaml:6: vf.mack: unknown key (known in vf: index, mac,"),
    (('"52:54:00:10:20:30"', '"53:54:00:10:20:30"'), "host.yaml:6: vf.mac: expected a unicast MAC"),
    (('"52:54:00:10:20:30"', '"52:54:00:10:20"'), "host.yaml:6: vf.mac: expected a MAC address like"),
    (('"52:54:00:10:20:30"', '"00:00:00:00:00:00"'), "host.yaml:6: vf.mac: expected a unicast MAC, got the all-zero"),
    (("  index: 1\n", "  index: 1\n  vlan: 4096\n"), "host.yaml:6: vf.vlan: expected an integer 0..4095 (0: no VLAN), got 4096"),
    (("  index: 1\n", "  index: 1\n  trust: maybe\n"), "host.yaml:6: vf.trust: expected true or false, got 'maybe'"),
    (("  index: 1\n", "  index: 1\n  qos: 3\n"), "host.yaml:6: vf.qos: needs vf.vlan 1..4095"),
    (("  index: 1\n", "  index: 1\n  target_index: 1\n"), "host.yaml:6: vf.target_index: must differ from vf.index (1)"),
    (("  index: 1\n", "  index: 1\n  index: 2\n"), "host.yaml:6: vf.index: given twice (first on line 5)"),
    (("  bridge: br0", "  bridge: br0\n  macvtap: {mode: bridge}"), "host.yaml:8: standby: expected exactly one of"),
    (("  bridge: br0", "  macvtap: {mode: hairpin}"), "host.yaml:8: standby.macvtap.mode: expected one of bridge, vepa"),
    (("  netdev: enp59s0f0", "  netdev: a/b"), "host.yaml:2: pf.netdev: expected a netdev name"),
    (("  num_vfs: 4\n", ""), "host.yaml:2: pf.num_vfs: missing (required)"),
    (("standby:\n  bridge: br0\n", "standbye:\n  bridge: br0\n"), "host.yaml:7: standbye: unknown key"),
    (("standby:\n  bridge: br0\n", "standby: [br0]\n"), "host.yaml:7: standby: expected a mapping of bridge, macvtap"),
    (("  num_vfs: 4", "  num_vfs: [4"), "host.yaml:4: not valid YAML"),
])
def test_bad_file_names_file_line_and_key(tmp_path, change, message):
    text = GOOD.replace(*change)
    assert text != GOOD, "the change must apply"
    assert _profile_error(tmp_path, text).startswith(message)


def test_empty_and_missing_files(tmp_path):
    assert "empty; expected the keys pf, vf and standby" in _profile_error(tmp_path, "")
    with pytest.raises(HostProfileError, match="nope.yaml: cannot read it"):
        load(tmp_path / "nope.yaml")


# --- the VM spec ----------------------------------------------------------------

VF = {"address": "0000:3b:02.1", "target_address": None, "mac": "52:54:00:10:20:30", "pf": "enp59s0f0",
      "standby": {"bridge": "br0", "macvtap_mode": None}}


def test_vf_replaces_the_emulated_primary_and_gives_the_pair_its_mac():
    spec = vf_spec(failover_spec("pair"), VF, incoming=False)
    argv = build_argv(spec, "/usr/bin/qemu-system-x86_64", Accelerator("tcg", "test", "max"),
                      {"kernel": "/k", "initramfs": "/i"}, Path("/tmp/s"), Path("/tmp/a"), ["vt0"])
    devices = [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]
    assert "vfio-pci,host=0000:3b:02.1,id=hostdev0,bus=root2,failover_pair_id=net1" in devices
    assert not any(d.startswith("e1000e") for d in devices)
    standby = next(d for d in devices if d.startswith("virtio-net-pci"))
    assert "mac=52:54:00:10:20:30" in standby and "failover=on" in standby
    netdevs = [argv[i + 1] for i, a in enumerate(argv) if a == "-netdev"]
    assert netdevs == ["tap,id=hn0,ifname=vt0,script=no,downscript=no,vnet_hdr=on"], "only the standby has a netdev"


def test_igb_primaries_stay_emulated():
    spec = failover_spec("igb", primary_driver="igb")
    assert vf_spec(spec, VF, incoming=False) is spec


def test_migration_target_without_a_second_vf_skips():
    with pytest.raises(pytest.skip.Exception, match="vf.target_index"):
        vf_spec(failover_spec("pair"), VF, incoming=True)
    target = vf_spec(failover_spec("pair"), {**VF, "target_address": "0000:3b:02.2"}, incoming=True)
    assert target.nics[1].properties["host"] == "0000:3b:02.2"


# --- this machine: no SR-IOV ------------------------------------------------------

def _host_state():
    links = sorted(os.listdir("/sys/class/net"))
    overrides = {}
    for device in Path("/sys/bus/pci/devices").iterdir():
        try:
            overrides[device.name] = ((device / "driver_override").read_text(), os.path.realpath(device / "driver"))
        except OSError:
            pass
    return links, overrides


def _run_vf(out, host_config, env=None):
    return subprocess.run([VNETCT, "run", "--no-setup", "--out", str(out), "--profile", "vf",
                           "--host-config", str(host_config)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, check=False)


def test_run_on_this_machine_fails_early_and_leaves_the_host_as_it_was(tmp_path):
    before = _host_state()
    result = _run_vf(tmp_path / "out", EXAMPLE)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "pf.netdev enp59s0f0: no such physical function netdev" in result.stderr, result.stderr
    assert "the host was not changed" in result.stderr
    assert _host_state() == before
    assert not sriov.DEFAULT_JOURNAL.exists()
    assert not (tmp_path / "out").exists(), "no run was started"


def test_bad_host_config_is_a_usage_error_naming_file_line_and_key(tmp_path):
    bad = tmp_path / "host.yaml"
    bad.write_text(GOOD.replace("index: 1", "index: 9"))
    result = _run_vf(tmp_path / "out", bad)
    assert result.returncode == 2
    assert f"{bad}:5: vf.index: expected an integer 0..3" in result.stderr, result.stderr
    missing = subprocess.run([VNETCT, "run", "--no-setup", "--profile", "vf"], capture_output=True, text=True,
                             timeout=60, check=False)
    assert missing.returncode == 2 and "--profile vf needs --host-config FILE" in missing.stderr


# --- set-up and restore on a fake sysfs tree --------------------------------------

class FakeTree:
    """A sysfs tree of one PF with SR-IOV; no kernel behind it, so writes stay plain file writes."""

    def __init__(self, root: Path, num_vfs: int = 0, vf_driver: str = "iavf"):
        self.root = root
        self._device(PF_ADDRESS, "ice")
        (self.device_dir(PF_ADDRESS) / "sriov_totalvfs").write_text("8\n")
        (self.device_dir(PF_ADDRESS) / "sriov_numvfs").write_text(f"{num_vfs}\n")
        (root / "class/net/enp59s0f0").mkdir(parents=True)
        (root / "class/net/enp59s0f0/device").symlink_to(f"../../../devices/pci0000:00/{PF_ADDRESS}")
        (root / "bus/pci/drivers/vfio-pci").mkdir(parents=True)
        for index in range(num_vfs):
            address = f"0000:3b:02.{index}"
            self._device(address, vf_driver, group=f"{10 + index}")
            (self.device_dir(PF_ADDRESS) / f"virtfn{index}").symlink_to(f"../{address}")

    def device_dir(self, address):
        return self.root / "devices/pci0000:00" / address

    def _device(self, address, driver, group=None):
        directory = self.device_dir(address)
        directory.mkdir(parents=True)
        (directory / "driver_override").write_text("(null)\n")
        (directory / "class").write_text("0x020000\n")
        (self.root / "bus/pci/devices").mkdir(parents=True, exist_ok=True)
        (self.root / "bus/pci/devices" / address).symlink_to(f"../../../devices/pci0000:00/{address}")
        (self.root / "bus/pci/drivers" / driver).mkdir(parents=True, exist_ok=True)
        (directory / "driver").symlink_to(f"../../../bus/pci/drivers/{driver}")
        if group is not None:
            members = self.root / "kernel/iommu_groups" / group / "devices"
            members.mkdir(parents=True)
            (members / address).symlink_to(f"../../../../devices/pci0000:00/{address}")
            (directory / "iommu_group").symlink_to(f"../../../kernel/iommu_groups/{group}")

    def num_vfs(self):
        return (self.device_dir(PF_ADDRESS) / "sriov_numvfs").read_text()


@pytest.fixture
def fake_host(tmp_path, monkeypatch):
    monkeypatch.setenv("VNETCT_SYSFS_ROOT", str(tmp_path / "sys"))
    monkeypatch.setenv("VNETCT_SRIOV_JOURNAL", str(tmp_path / "run" / "sriov-journal.json"))
    (tmp_path / "host.yaml").write_text(GOOD)
    return tmp_path


def test_failed_setup_is_undone_before_the_error(fake_host):
    tree = FakeTree(fake_host / "sys", num_vfs=0)
    lines = []
    with pytest.raises(sriov.SriovSetupError, match="virtfn1"):
        # The fake tree has no kernel: writing 4 to sriov_numvfs creates no virtfn links.
        with sriov.prepared_host(load(fake_host / "host.yaml"), lines.append):
            pytest.fail("the set-up must not succeed")
    assert tree.num_vfs() == "0", "sriov_numvfs back to its old value"
    assert "vnetct: restored enp59s0f0: sriov_numvfs 0" in lines
    assert not sriov.journal_path().exists()


def test_vf_without_netlink_support_fails_and_changes_nothing(fake_host, monkeypatch):
    tree = FakeTree(fake_host / "sys", num_vfs=4)
    netns = f"vnetct-vfpy{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        # The PF's name on a veth in a private namespace: the kernel reports no VFs for it.
        subprocess.run(["ip", "-n", netns, "link", "add", "enp59s0f0", "type", "veth", "peer", "name", "p1"],
                       check=True)
        monkeypatch.setenv("VNETCT_SRIOV_NETNS", netns)
        with pytest.raises(sriov.SriovSetupError, match="reports 0 VFs through netlink, not VF 1"):
            with sriov.prepared_host(load(fake_host / "host.yaml"), lambda line: None):
                pytest.fail("the set-up must not succeed")
    finally:
        subprocess.run(["ip", "netns", "delete", netns], check=True)
    assert tree.num_vfs() == "4\n", "the count was right already: never written"
    assert os.path.realpath(tree.device_dir("0000:3b:02.1") / "driver").endswith("/iavf")
    assert not sriov.journal_path().exists()


def test_a_journal_left_behind_is_restored_first(fake_host):
    tree = FakeTree(fake_host / "sys", num_vfs=4)
    sriov.journal_path().parent.mkdir(parents=True)
    sriov.journal_path().write_text(json.dumps(
        {"entries": [{"op": "num_vfs", "pf": "enp59s0f0", "previous": 0}]}))
    lines = []
    sriov.restore_left_behind(lines.append)
    assert tree.num_vfs() == "0"
    assert any("an earlier run left the undo journal" in line for line in lines)
    assert not sriov.journal_path().exists()


def test_a_journal_that_cannot_be_undone_stops_the_run_and_stays(fake_host):
    FakeTree(fake_host / "sys", num_vfs=4)
    sriov.journal_path().parent.mkdir(parents=True)
    sriov.journal_path().write_text(json.dumps(
        {"entries": [{"op": "binding", "address": "0000:3b:02.0", "previous_driver": "ixgbevf",
                      "previous_override": ""}]}))
    with pytest.raises(sriov.SriovSetupError, match="could not be undone"):
        sriov.restore_left_behind(lambda line: None)
    assert sriov.journal_path().exists()


def test_cli_restores_the_fake_host_after_a_failed_setup(fake_host):
    tree = FakeTree(fake_host / "sys", num_vfs=0)
    result = _run_vf(fake_host / "out", fake_host / "host.yaml",
                     env={"VNETCT_SYSFS_ROOT": str(fake_host / "sys"),
                          "VNETCT_SRIOV_JOURNAL": str(fake_host / "run" / "sriov-journal.json")})
    assert result.returncode == 3, result.stdout + result.stderr
    assert "virtfn1" in result.stderr
    assert "vnetct: restored enp59s0f0: sriov_numvfs 0" in result.stdout
    assert tree.num_vfs() == "0"


def _fake_prepare(tree):
    """sriov_prepare on the fake tree: journals and makes one change (no kernel to bind VFs)."""
    def prepare(request, journal, sysfs_root, netns):
        Path(journal).write_text(json.dumps({"entries": [{"op": "num_vfs", "pf": "enp59s0f0", "previous": 0}]}))
        (tree.device_dir(PF_ADDRESS) / "sriov_numvfs").write_text("4\n")
        return [{"index": index, "address": f"0000:3b:02.{index}", "driver": "vfio-pci", "iommu_group": "1"}
                for index in (1, 2)]
    return prepare


def test_a_second_run_on_the_host_fails_fast_and_the_first_stays_intact(fake_host, monkeypatch):
    tree = FakeTree(fake_host / "sys", num_vfs=0)
    monkeypatch.setattr(vnetct_native, "sriov_prepare", _fake_prepare(tree))
    env = {"VNETCT_SYSFS_ROOT": str(fake_host / "sys"), "VNETCT_SRIOV_JOURNAL": str(sriov.journal_path()),
           "VNETCT_RUN_LOCKS": str(fake_host / "locks")}
    with sriov.prepared_host(load(fake_host / "host.yaml"), lambda line: None):  # the first run has the host
        second = _run_vf(fake_host / "second", fake_host / "host.yaml", env=env)
        assert second.returncode == 3, second.stdout + second.stderr
        assert f"another run has the host (pid {os.getpid()}" in second.stderr, second.stderr
        assert "one run of the vf profile at a time; nothing was changed" in second.stderr
        assert "earlier run left the undo journal" not in second.stdout
        # A run of another profile leaves a live run's journal alone too.
        other = subprocess.run([VNETCT, "run", "--no-setup", "--profile", "reference", "-k", "FO-NEG-01",
                                "--out", str(fake_host / "other")], capture_output=True, text=True, timeout=120,
                               env={**os.environ, **env}, check=False)
        assert other.returncode == 0, other.stdout[-2000:] + other.stderr[-2000:]
        assert tree.num_vfs() == "4\n" and sriov.journal_path().exists(), "the first run's host was touched"
    assert tree.num_vfs() == "0" and not sriov.journal_path().exists()


def test_a_killed_runs_journal_is_put_back_by_the_next_run(fake_host):
    tree = FakeTree(fake_host / "sys", num_vfs=4)
    sriov.journal_path().parent.mkdir(parents=True)
    sriov.journal_path().write_text(json.dumps({"entries": [{"op": "num_vfs", "pf": "enp59s0f0", "previous": 0}]}))
    result = subprocess.run([VNETCT, "run", "--no-setup", "--profile", "reference", "-k", "FO-NEG-01",
                             "--out", str(fake_host / "out")], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "VNETCT_RUN_LOCKS": str(fake_host / "locks")}, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "restored the host from" in result.stdout
    assert tree.num_vfs() == "0" and not sriov.journal_path().exists()


def test_native_errors_carry_their_code(fake_host):
    FakeTree(fake_host / "sys", num_vfs=0)
    with pytest.raises(vnetct_native.SriovError) as error:
        vnetct_native.sriov_probe("eth9", str(fake_host / "sys"))
    assert error.value.code == "NoSuchPf"
    probe = vnetct_native.sriov_probe("enp59s0f0", str(fake_host / "sys"))
    assert probe == {"pf": "enp59s0f0", "address": PF_ADDRESS, "total_vfs": 8, "num_vfs": 0,
                     "vfio_pci_loaded": True}


def test_host_link_sweep_refuses_short_prefixes():
    from vnetct.sut.vf_wire import sweep_host_links

    with pytest.raises(ValueError, match="short prefix"):
        sweep_host_links("v")
    assert sweep_host_links("vzzzzzzz-none") == []
