"""Whether igbvf became the failover primary of L2, judged from L2's guest
agent lines after the restore (relayed by L1 as `L2AGENT <json>`): the VF's
netdev appears when QEMU plugs it on the loaded STANDBY feature, joins the
failover master, and the agent's report then shows it bound to igbvf,
enslaved, with the pair's MAC.

net_failover pairs by MAC: a primary whose MAC is not the standby's is
never enslaved. So a netdev that appears after the restore with another
MAC fails the judgement at once, naming both MACs, instead of waiting out
the deadline."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, List, Optional

PRIMARY_DRIVER = "igbvf"
REPORT_ID = 2  # the request L1's /init sends once a slave joined a master


class EnslaveFailed(Exception):
    """igbvf did not become the failover primary; the message says what was seen instead."""


@dataclass(frozen=True)
class Enslaved:
    name: str
    master: str
    mac: str
    driver: str
    pci_address: Optional[str]


def agent_lines(console_lines: Iterable[str]) -> List[dict]:
    """The JSON objects L1 relayed from L2's agent (`L2AGENT {...}`), in order; lines that are not JSON
    objects are skipped (L1's console may cut one)."""
    found = []
    for line in console_lines:
        if not line.startswith("L2AGENT "):
            continue
        try:
            value = json.loads(line[len("L2AGENT "):])
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def judge(messages: List[dict], pair_mac: str) -> Optional[Enslaved]:
    """The primary once it is enslaved under the failover master; None while the lines do not say yet;
    EnslaveFailed as soon as they show it cannot be."""
    pair_mac = pair_mac.lower()
    for message in messages:
        if message.get("event") == "netdev-added" and message.get("mac") not in (None, "00:00:00:00:00:00") \
                and message["mac"].lower() != pair_mac:
            raise EnslaveFailed(f"netdev {message.get('name')} appeared with MAC {message['mac']}, not the failover "
                                f"pair's {pair_mac}: net_failover pairs by MAC and does not enslave it")
        if message.get("id") == REPORT_ID and message.get("ok") is True:
            return _from_report(message.get("result", {}).get("netdevs", []), pair_mac)
        if message.get("id") == REPORT_ID:
            raise EnslaveFailed(f"L2's agent could not report: {message.get('error')}")
    return None


def _from_report(netdevs: List[dict], pair_mac: str) -> Enslaved:
    primaries = [netdev for netdev in netdevs if netdev.get("driver") == PRIMARY_DRIVER]
    seen = ", ".join(f"{n.get('name')} ({n.get('driver')}, master {n.get('master')}, {n.get('mac')})" for n in netdevs)
    if not primaries:
        raise EnslaveFailed(f"no {PRIMARY_DRIVER} netdev in L2's report: {seen}")
    primary = primaries[0]
    if not primary.get("master"):
        raise EnslaveFailed(f"{PRIMARY_DRIVER} netdev {primary.get('name')} is not enslaved: {seen}")
    if (primary.get("mac") or "").lower() != pair_mac:
        raise EnslaveFailed(f"{PRIMARY_DRIVER} netdev {primary.get('name')} has MAC {primary.get('mac')}, not the "
                            f"failover pair's {pair_mac}: {seen}")
    master = next((n for n in netdevs if n.get("name") == primary["master"]), None)
    if master is None or (master.get("mac") or "").lower() != pair_mac or master.get("master"):
        raise EnslaveFailed(f"{PRIMARY_DRIVER} netdev {primary.get('name')}'s master {primary['master']} is not "
                            f"the failover master with MAC {pair_mac}: {seen}")
    return Enslaved(primary["name"], primary["master"], pair_mac, PRIMARY_DRIVER, primary.get("pci_address"))
