"""The host profile file of `--profile vf` (format: harness/HOST-PROFILE.md):
a real SR-IOV set-up described in YAML, read strictly by vnetct.core.yaml_file
(every error names the file, the line and the key path, e.g. `host.yaml:7:
vf.index: expected an integer 0..3 (pf.num_vfs is 4), got 'x'`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import yaml  # Debian: python3-yaml

from vnetct.core import yaml_file

MACVTAP_MODES = ("bridge", "vepa", "private", "passthru")
NETDEV_NAME = re.compile(r"[A-Za-z0-9_.:@-]{1,15}")
MAC = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")
MAX_VFS = 256  # no PF offers more (PCIe SR-IOV TotalVFs is 16 bits; real devices stop at 256)


class HostProfileError(Exception):
    """A host profile file that cannot be used; the message says where and why."""


@dataclass
class VfConfig:
    index: int
    mac: str                       # lower case, unicast
    vfio: bool = True  # vnetct binds vfio-pci (and puts the old driver back); false: already bound by the admin
    target_index: Optional[int] = None  # a second VF for a migration target on this host
    vlan: Optional[int] = None     # None: leave as it is; 0: no VLAN
    qos: int = 0
    trust: Optional[bool] = None
    spoofchk: Optional[bool] = None


@dataclass
class StandbyCarrier:
    bridge: Optional[str] = None   # TAPs for the standby join this host bridge
    macvtap_mode: Optional[str] = None  # or a macvtap on the PF in this mode


@dataclass
class HostProfile:
    path: Path
    pf: str
    num_vfs: int
    vf: VfConfig
    standby: StandbyCarrier

    def vf_indices(self) -> List[int]:
        return [self.vf.index] + ([self.vf.target_index] if self.vf.target_index is not None else [])

    def setup_request(self) -> dict:
        """What the native set-up takes (vnetct_native.sriov_prepare)."""
        settings = {"mac": self.vf.mac, "vlan": self.vf.vlan, "qos": self.vf.qos, "trust": self.vf.trust,
                    "spoofchk": self.vf.spoofchk}
        return {"pf": self.pf, "num_vfs": self.num_vfs, "bind_vfio": self.vf.vfio,
                "vfs": [{"index": index, **settings} for index in self.vf_indices()]}

    def to_json(self) -> dict:
        return {"file": str(self.path), "pf": self.pf, "num_vfs": self.num_vfs, "vf": self.vf.__dict__,
                "standby": self.standby.__dict__}


def load(path: Path) -> HostProfile:
    """Reads and validates a host profile file; HostProfileError names the
    file, line and key of the first problem."""
    path = Path(path)
    root = yaml_file.compose(path, HostProfileError)
    reader = yaml_file.Reader(path, HostProfileError)
    if root is None:
        raise HostProfileError(f"{path}: empty; expected the keys pf, vf and standby (see harness/HOST-PROFILE.md)")
    top = reader.mapping(root, "", {"pf": True, "vf": True, "standby": True})

    pf_entries = reader.mapping(top["pf"], "pf", {"netdev": True, "num_vfs": True})
    pf = reader.string(pf_entries["netdev"], "pf.netdev", NETDEV_NAME, "a netdev name (1-15 of A-Z a-z 0-9 _ . : @ -)")
    num_vfs = reader.integer(pf_entries["num_vfs"], "pf.num_vfs", 1, MAX_VFS)

    vf_entries = reader.mapping(top["vf"], "vf", {"index": True, "mac": True, "vfio": False, "target_index": False,
                                                  "vlan": False, "qos": False, "trust": False, "spoofchk": False})
    why = f" (pf.num_vfs is {num_vfs})"
    index = reader.integer(vf_entries["index"], "vf.index", 0, num_vfs - 1, why)
    mac = reader.string(vf_entries["mac"], "vf.mac", MAC, "a MAC address like 52:54:00:6f:55:cc").lower()
    if int(mac[:2], 16) & 1:
        raise reader.error(vf_entries["mac"], "vf.mac", f"expected a unicast MAC (first octet even), got '{mac}'")
    if mac == "00:00:00:00:00:00":
        raise reader.error(vf_entries["mac"], "vf.mac", "expected a unicast MAC, got the all-zero address")
    vf = VfConfig(index=index, mac=mac)
    if "vfio" in vf_entries:
        vf.vfio = reader.boolean(vf_entries["vfio"], "vf.vfio")
    if "target_index" in vf_entries:
        vf.target_index = reader.integer(vf_entries["target_index"], "vf.target_index", 0, num_vfs - 1, why)
        if vf.target_index == index:
            raise reader.error(vf_entries["target_index"], "vf.target_index",
                               f"must differ from vf.index ({index}): the migration target needs a VF of its own")
    if "vlan" in vf_entries:
        vf.vlan = reader.integer(vf_entries["vlan"], "vf.vlan", 0, 4095, " (0: no VLAN)")
    if "qos" in vf_entries:
        vf.qos = reader.integer(vf_entries["qos"], "vf.qos", 0, 7)
        if not vf.vlan:
            raise reader.error(vf_entries["qos"], "vf.qos", "needs vf.vlan 1..4095 (the priority is a VLAN tag's)")
    if "trust" in vf_entries:
        vf.trust = reader.boolean(vf_entries["trust"], "vf.trust")
    if "spoofchk" in vf_entries:
        vf.spoofchk = reader.boolean(vf_entries["spoofchk"], "vf.spoofchk")

    standby_entries = reader.mapping(top["standby"], "standby", {"bridge": False, "macvtap": False})
    if len(standby_entries) != 1:
        raise reader.error(top["standby"], "standby",
                           "expected exactly one of bridge (a host bridge name) or macvtap (a mode), "
                           f"got {len(standby_entries)}")
    standby = StandbyCarrier()
    if "bridge" in standby_entries:
        standby.bridge = reader.string(standby_entries["bridge"], "standby.bridge", NETDEV_NAME, "a bridge name")
    else:
        mode_entries = reader.mapping(standby_entries["macvtap"], "standby.macvtap", {"mode": True})
        mode_node = mode_entries["mode"]
        if not isinstance(mode_node, yaml.ScalarNode) or mode_node.value not in MACVTAP_MODES:
            raise reader.error(mode_node, "standby.macvtap.mode",
                               f"expected one of {', '.join(MACVTAP_MODES)}, got {yaml_file.describe(mode_node)}")
        standby.macvtap_mode = mode_node.value
    return HostProfile(path=path, pf=pf, num_vfs=num_vfs, vf=vf, standby=standby)
