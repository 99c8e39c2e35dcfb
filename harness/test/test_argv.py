"""The QEMU argv built from a declared VM: escaping, topology, pairing options."""

from pathlib import Path

from vnetct.failover.guest import failover_spec
from vnetct.vm.guest import Accelerator, build_argv, flatten_pci

IMAGE = {"kernel": "/k/vmlinuz", "initramfs": "/k/initramfs"}


def _argv(spec, sockets="/tmp/s", artifacts="/tmp/a"):
    return build_argv(spec, "/usr/bin/qemu-system-x86_64", Accelerator("tcg", "test", "max"), IMAGE,
                      Path(sockets), Path(artifacts), ["vt0", "vt1"])


def _devices(argv):
    return [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]


def test_failover_pair_gets_own_root_ports_and_pairing_options():
    devices = _devices(_argv(failover_spec("pair")))
    assert "pcie-root-port,id=root1,chassis=1,slot=1" in devices
    assert "pcie-root-port,id=root2,chassis=2,slot=2" in devices
    standby = next(d for d in devices if d.startswith("virtio-net-pci"))
    primary = next(d for d in devices if d.startswith("e1000e"))
    assert "id=net1" in standby and "failover=on" in standby and "bus=root1" in standby
    assert "id=hostdev0" in primary and "failover_pair_id=net1" in primary and "bus=root2" in primary
    assert "mac=52:54:00:6f:55:cc" in standby and "mac=52:54:00:6f:55:cc" in primary


def test_commas_in_paths_are_escaped():
    argv = _argv(failover_spec("pair"), sockets="/tmp/we,ird", artifacts="/tmp/out,put")
    chardevs = [argv[i + 1] for i, a in enumerate(argv) if a == "-chardev"]
    assert any("path=/tmp/we,,ird/qmp.sock" in c for c in chardevs)
    assert any("path=/tmp/out,,put/serial-pair.log" in c for c in chardevs)


def test_missing_id_and_explicit_bus_are_passed_through():
    devices = _devices(_argv(failover_spec("cfg", primary_id=None, primary_bus="pcie.0")))
    primary = next(d for d in devices if d.startswith("e1000e"))
    assert "id=" not in primary.replace("netdev=", "").replace("failover_pair_id=", "")
    assert "bus=pcie.0" in primary
    assert sum(d.startswith("pcie-root-port") for d in devices) == 1


def test_flatten_pci_walks_bridges():
    tree = [{"bus": 0, "devices": [
        {"qdev_id": "root1", "pci_bridge": {"bus": {"number": 1}, "devices": [{"qdev_id": "net1"}]}},
        {"qdev_id": "agentbus"}]}]
    assert [d["qdev_id"] for d in flatten_pci(tree)] == ["root1", "net1", "agentbus"]
