"""Wire impairment for seeded faults: nftables rules (bridge family) in the
wire's namespace on one guest NIC's TAP. This kernel has no netem; nftables'
`numgen random` drops a share of the frames, and a table of its own per VM
goes with `remove()` (and with the namespace anyway)."""

from __future__ import annotations

import re
import subprocess
from typing import Callable, Tuple


class ImpairmentError(RuntimeError):
    """nft refused the rules: names the namespace, the TAP and nft's words."""


def _nft(netns: str, script: str, what: str) -> None:
    done = subprocess.run(["ip", "netns", "exec", netns, "nft", "-f", "-"], input=script, text=True,
                          capture_output=True, check=False)
    if done.returncode != 0:
        raise ImpairmentError(f"{what} in namespace {netns}: nft exited {done.returncode}: {done.stderr.strip()}")


def random_loss(netns: str, tap: str, percent: int, owner: str,
                directions: Tuple[str, ...] = ("iifname", "oifname")) -> Callable[[], None]:
    """Drops `percent` % of the frames entering (iifname) and/or leaving
    (oifname: on their way into the TAP) the bridge by `tap`; returns the
    remover."""
    if not 0 < percent < 100 or not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", tap):
        raise ImpairmentError(f"random loss on {tap!r}: percent {percent} must be 1..99, the TAP a device name")
    if not directions or set(directions) - {"iifname", "oifname"}:
        raise ImpairmentError(f"random loss on {tap!r}: directions {directions} must be iifname and/or oifname")
    table = "vnetct_fault_" + re.sub(r"[^A-Za-z0-9_]", "_", owner)[:40]
    rules = "".join(f'    {direction} "{tap}" numgen random mod 100 < {percent} counter drop\n'
                    for direction in directions)
    _nft(netns, f"""table bridge {table} {{
  chain forward {{
    type filter hook forward priority 0; policy accept;
{rules}  }}
}}
""", f"random loss {percent} % on {tap}")

    def remove() -> None:
        subprocess.run(["ip", "netns", "exec", netns, "nft", "delete", "table", "bridge", table],
                       capture_output=True, check=False)
    return remove
