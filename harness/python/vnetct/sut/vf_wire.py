"""Profile vf: the failover pair on a real host. The cases declare the emulated
pair (virtio-net standby + e1000e primary, vnetct.failover.guest); here the e1000e
primary becomes the prepared VF, `-device vfio-pci,host=<VF>,id=...,
failover_pair_id=...`, the pair takes the VF's MAC (set through the PF), and
the standby's backend is carried where the VF's traffic goes: TAPs on the
host bridge named by standby.bridge, or macvtaps on the PF (standby.macvtap).
Device names carry the run's prefix, and every carrier deletes its devices."""

from __future__ import annotations

import dataclasses
import os
from typing import List, Optional

import pytest

from vnetct.vm.guest import VmSpec
from vnetct.core.native import vnetct_native

EMULATED_PRIMARY = "e1000e"  # what the VF replaces; other primaries (igb findings) stay emulated


def vf_spec(spec: VmSpec, vf: dict, incoming: bool) -> VmSpec:
    """`spec` with its e1000e failover primary replaced by the VF (the target
    VF for a migration target) and the pair's MAC replaced by the VF's."""
    address = vf["target_address"] if incoming else vf["address"]
    primaries = [nic for nic in spec.nics if "failover_pair_id" in nic.properties
                 and nic.driver in (EMULATED_PRIMARY, "vfio-pci")]
    if not primaries:
        return spec
    if address is None:
        pytest.skip("profile vf: a migration target on this host needs a VF of its own "
                    "(vf.target_index in the host profile)")
    pair_mac = primaries[0].mac
    nics = []
    for nic in spec.nics:
        if nic in primaries:
            properties = {"host": address, "failover_pair_id": nic.properties["failover_pair_id"]}
            nic = dataclasses.replace(nic, driver="vfio-pci", tap=False, properties=properties)
        if nic.mac == pair_mac:
            nic = dataclasses.replace(nic, mac=vf["mac"])
        nics.append(nic)
    return dataclasses.replace(spec, nics=nics)


def _ip(*arguments: str) -> str:
    status, output = vnetct_native.run_command(["ip", *arguments], 20.0)
    if status.code != 0 or status.signal != 0:
        raise RuntimeError(f"ip {' '.join(arguments)}: {output.strip()}")
    return output


class HostCarrier:
    """The standby's side of the wire on the host: the same surface as
    vnetct_native.Topology (netns "" = the host's namespace, taps, destroy,
    describe), plus fds_for() for macvtaps."""

    def __init__(self, vf: dict, prefix: str, count: int):
        self.netns = ""
        self.bridge: Optional[str] = vf["standby"]["bridge"]
        self.macvtap_mode: Optional[str] = vf["standby"]["macvtap_mode"]
        self.pf = vf["pf"]
        self.mac = vf["mac"]
        self.taps: List[str] = [f"{prefix}s{index}" for index in range(count)]
        self._created: List[str] = []

    @classmethod
    def create(cls, vf: dict, prefix: str, count: int) -> "HostCarrier":
        carrier = cls(vf, prefix, count)
        try:
            for name in carrier.taps:
                if carrier.bridge:
                    _ip("tuntap", "add", "dev", name, "mode", "tap", "vnet_hdr")
                    carrier._created.append(name)
                    _ip("link", "set", name, "master", carrier.bridge)
                else:
                    _ip("link", "add", "link", carrier.pf, "name", name, "type", "macvtap",
                        "mode", carrier.macvtap_mode)
                    carrier._created.append(name)
                    _ip("link", "set", name, "address", carrier.mac)
                _ip("link", "set", name, "up")
        except RuntimeError:
            carrier.destroy()
            raise
        return carrier

    def fds_for(self, taps: List[str]) -> Optional[List[int]]:
        """macvtap: QEMU takes the queue as an open /dev/tapN (`-netdev tap,fd=N`)."""
        if self.bridge:
            return None
        fds = []
        for name in taps:
            with open(f"/sys/class/net/{name}/ifindex") as ifindex:
                fds.append(os.open(f"/dev/tap{ifindex.read().strip()}", os.O_RDWR | os.O_CLOEXEC))
        return fds

    def describe(self) -> str:
        return _ip("-s", "-d", "link", "show", *(["master", self.bridge] if self.bridge else []))

    def destroy(self) -> None:
        problems = []
        for name in reversed(self._created):
            try:
                _ip("link", "delete", name)
            except RuntimeError as error:
                problems.append(str(error))
        self._created = []
        if problems:
            raise RuntimeError("; ".join(problems))


def sweep_host_links(prefix: str) -> List[str]:
    """Deletes the host's links whose names start with the run's device
    prefix (v<short id>): carriers a dead case runner left behind."""
    if len(prefix) < 7:
        raise ValueError(f"refusing to sweep host links with the short prefix '{prefix}'")
    deleted = []
    for name in sorted(os.listdir("/sys/class/net")):
        if name.startswith(prefix):
            _ip("link", "delete", name)
            deleted.append(name)
    return deleted
