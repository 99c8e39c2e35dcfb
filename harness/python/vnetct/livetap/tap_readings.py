"""What the kernel says of a live-TAP bench's TAPs, read from outside every
fd (`ip -s -d link`, `ethtool -k` in the wire's namespace): the host-side
witness beside what the backends report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Dict, List

from vnetct.core.native import vnetct_native


@dataclass
class Link:
    """One `ip -s -d link` reading of a TAP."""
    ifindex: int
    tx_packets: int
    tx_dropped: int
    carrier_changes: int
    txqlen: int
    operstate: str
    info: dict

    def to_json(self) -> dict:
        return self.__dict__


def ip_in(netns: str, argv: List[str]) -> str:
    """`ip -n NETNS ARGV...`'s output; a failure raises, naming the command."""
    status, output = vnetct_native.run_command(["ip", "-n", netns, *argv], 10.0)
    if status.code != 0 or status.signal != 0:
        raise AssertionError(f"ip -n {netns} {' '.join(argv)}: {status.describe()}: {output.strip()}")
    return output


def read_features(netns: str, tap: str) -> Dict[str, bool]:
    """The device's offload features as the kernel shows them from outside any
    of its fds (`ethtool --json -k` in its namespace): what a TUNSETOFFLOAD on
    a queue changes, seen from the host rather than told by a backend."""
    argv = ["ip", "netns", "exec", netns, "ethtool", "--json", "-k", tap]
    status, output = vnetct_native.run_command(argv, 10.0)
    if status.code != 0 or status.signal != 0:
        raise AssertionError(f"{' '.join(argv)}: {status.describe()}: {output.strip()}")
    entry = json.loads(output)[0]
    return {name: bool(value.get("active")) for name, value in entry.items() if isinstance(value, dict)}


def read_link(netns: str, tap: str) -> Link:
    """The kernel's reading of a TAP (ifindex, counters, carrier changes)."""
    entry = json.loads(ip_in(netns, ["-j", "-s", "-s", "-d", "link", "show", "dev", tap]))[0]
    tx = entry["stats64"]["tx"]
    return Link(ifindex=entry["ifindex"], tx_packets=tx["packets"], tx_dropped=tx["dropped"],
                carrier_changes=tx.get("carrier_changes", 0), txqlen=entry.get("txqlen", 0),
                operstate=entry.get("operstate", ""), info=entry.get("linkinfo", {}).get("info_data", {}))


def wire_drops(netns: str) -> Dict[str, int]:
    """Per device of the namespace (the wire: its TAPs, the bridge, the veth
    pair), the frames the kernel counted as dropped (rx_dropped + tx_dropped):
    a loss these counters explain is the wire's, one they do not is nobody's."""
    return {entry["ifname"]: entry["stats64"]["rx"]["dropped"] + entry["stats64"]["tx"]["dropped"]
            for entry in json.loads(ip_in(netns, ["-j", "-s", "-s", "link", "show"])) if "stats64" in entry}
