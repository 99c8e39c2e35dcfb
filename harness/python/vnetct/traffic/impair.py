"""Wire impairment: nftables rules in a wire's namespace that drop frames on
one TAP's bridge port, to show that the datapath checks fail when the wire
misbehaves (this kernel has no netem; it has nftables with the bridge family
and `numgen`).

The rules live in a table of their own, `bridge vnetct_impair` (a witness
that only counts: a table of its own name), inside the wire's namespace (one
namespace per wire and per run), in two chains:
- `from_guest` (hook prerouting): frames entering the bridge by the TAP,
  i.e. sent by the guest's NIC behind it, counted once each even when the
  bridge floods them to several ports;
- `to_guest` (hook postrouting): frames leaving the bridge by the TAP,
  i.e. delivered to that NIC (once per frame and port).
Each drop rule is preceded by a counting rule for the same frames, so the
evidence says "dropped D of S frames". `remove()` deletes the table; deleting
the namespace removes it anyway."""

from __future__ import annotations

import enum
import json
import subprocess
from dataclasses import dataclass
from typing import Dict, List, Optional

TABLE = "vnetct_impair"
NFT_TIMEOUT_S = 10.0
# numgen random draws below this; percentages are resolved to 0.01 %.
RANDOM_SCALE = 10_000
# numgen inc counts modulo this (2^32 - 1, the largest nft takes): a blackout
# sees its counter wrap only after 4e9 frames.
INC_MODULUS = 4_294_967_295


class Direction(enum.Enum):
    FROM_GUEST = "from-guest"
    TO_GUEST = "to-guest"
    BOTH = "both"

    def chains(self) -> List[str]:
        return {Direction.FROM_GUEST: ["from_guest"], Direction.TO_GUEST: ["to_guest"],
                Direction.BOTH: ["from_guest", "to_guest"]}[self]


_CHAIN_HOOK = {"from_guest": ("prerouting", "iifname"), "to_guest": ("postrouting", "oifname")}


class ImpairmentError(RuntimeError):
    """nft refused or failed; the message names the namespace, the TAP and nft's stderr."""


@dataclass(frozen=True)
class DropRule:
    """One drop rule on one TAP's port in one chain. `name` is its nft
    comment (unique in the table); `match` the nft expression that picks
    the frames to drop among those of the port."""
    name: str
    kind: str        # random-loss | blackout | count (drops nothing)
    tap: str
    chain: str       # from_guest | to_guest
    match: Optional[str]
    description: str

    def nft_rules(self, table: str = TABLE) -> List[str]:
        _, selector = _CHAIN_HOOK[self.chain]
        port = f'{selector} "{self.tap}"'
        rules = [f'add rule bridge {table} {self.chain} {port} counter comment "seen {self.name}"']
        if self.match is not None:
            rules.append(f'add rule bridge {table} {self.chain} {port} {self.match} counter drop '
                         f'comment "{self.name}"')
        return rules

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "tap": self.tap, "chain": self.chain, "match": self.match,
                "description": self.description}


def random_loss_rules(tap: str, percent: float, direction: Direction = Direction.BOTH) -> List[DropRule]:
    """Rules dropping `percent` % of the frames on `tap`'s port, each frame
    drawn independently (`numgen random`), in `direction`."""
    threshold = round(percent * RANDOM_SCALE / 100)
    if not 0 < threshold <= RANDOM_SCALE or abs(threshold - percent * RANDOM_SCALE / 100) > 1e-6:
        raise ValueError(f"random loss on {tap}: {percent} % is not a multiple of 0.01 in (0, 100]")
    return [DropRule(f"random-loss {tap} {chain}", "random-loss", tap, chain,
                     f"numgen random mod {RANDOM_SCALE} < {threshold}",
                     f"{percent:g} % of the frames {chain.replace('_', ' ')} on {tap}, drawn at random")
            for chain in direction.chains()]


def blackout_rules(tap: str, frames: int, direction: Direction = Direction.FROM_GUEST) -> List[DropRule]:
    """Rules dropping the first `frames` frames on `tap`'s port from the
    moment they are installed (`numgen inc`: a counter of the port's frames
    that starts at 0), then nothing. With the echo stream as the only
    traffic, a blackout of N frames the guest sends lasts N / rate seconds
    of the stream (60 frames = 300 ms at 200 datagrams/s); installed while
    the port carries nothing (a migration target's port before it joins the
    wire), it starts with the first frame the NIC behind it sends."""
    if frames < 1:
        raise ValueError(f"blackout on {tap}: {frames} frames; at least 1")
    return [DropRule(f"blackout {tap} {chain}", "blackout", tap, chain,
                     f"numgen inc mod {INC_MODULUS} < {frames}",
                     f"the first {frames} frames {chain.replace('_', ' ')} on {tap} from installation")
            for chain in direction.chains()]


def count_rules(tap: str, direction: Direction = Direction.FROM_GUEST) -> List[DropRule]:
    """Rules that only count the frames on `tap`'s port (a witness, no drop)."""
    return [DropRule(f"count {tap} {chain}", "count", tap, chain, None,
                     f"frames {chain.replace('_', ' ')} on {tap}, counted") for chain in direction.chains()]


def tap_of(vm, nic_id: str) -> str:
    """The TAP behind the NIC `nic_id` of `vm` (TAPs follow the TAP-backed NICs in order)."""
    tapped = [nic.id for nic in vm.spec.nics if nic.tap]
    if nic_id not in tapped:
        raise ValueError(f"{vm.name} has no TAP-backed NIC {nic_id!r} (it has {tapped})")
    return vm.taps[tapped.index(nic_id)]


def ruleset(rules: List[DropRule], table: str = TABLE) -> str:
    """The nft batch that adds `rules` (and the table and chains they need):
    one transaction, applied whole or not at all."""
    lines = [f"add table bridge {table}"]
    for chain in dict.fromkeys(rule.chain for rule in rules):
        hook, _ = _CHAIN_HOOK[chain]
        lines.append(f"add chain bridge {table} {chain} {{ type filter hook {hook} priority 0; policy accept; }}")
    for rule in rules:
        lines += rule.nft_rules(table)
    return "\n".join(lines) + "\n"


def counters_from_listing(listing: dict, table: str = TABLE) -> Dict[str, dict]:
    """{rule name: {"seen": frames on the port, "dropped": frames dropped}}
    from `nft -j list table bridge TABLE`."""
    found: Dict[str, dict] = {}
    for item in listing.get("nftables", []):
        rule = item.get("rule")
        if not rule or rule.get("table") != table or "comment" not in rule:
            continue
        packets = next((e["counter"]["packets"] for e in rule["expr"] if "counter" in e), 0)
        comment = rule["comment"]
        if comment.startswith("seen "):
            found.setdefault(comment[len("seen "):], {})["seen"] = packets
        else:
            found.setdefault(comment, {})["dropped"] = packets
    return found


class Impairment:
    """The impairments of one wire: drop rules added one call at a time,
    counters read back, everything removed by remove()."""

    def __init__(self, wire, table: str = TABLE):
        self.netns: str = wire.netns
        self.table = table
        self.rules: List[DropRule] = []

    def random_loss(self, tap: str, percent: float, direction: Direction = Direction.BOTH) -> List[DropRule]:
        return self._install(random_loss_rules(tap, percent, direction))

    def blackout(self, tap: str, frames: int, direction: Direction = Direction.FROM_GUEST) -> List[DropRule]:
        return self._install(blackout_rules(tap, frames, direction))

    def count(self, tap: str, direction: Direction = Direction.FROM_GUEST) -> List[DropRule]:
        return self._install(count_rules(tap, direction))

    def seen(self, rule: DropRule) -> int:
        """Frames that passed `rule`'s port so far."""
        return self.counters().get(rule.name, {}).get("seen", 0)

    def counters(self) -> Dict[str, dict]:
        if not self.rules:
            return {}
        output = self._nft(["-j", "list", "table", "bridge", self.table], None, self._taps())
        try:
            return counters_from_listing(json.loads(output), self.table)
        except ValueError as error:
            raise ImpairmentError(f"namespace {self.netns}: nft -j list table bridge {self.table} gave no JSON "
                                  f"({error}): {output[:200]!r}") from None

    def evidence(self) -> dict:
        """What was installed and what each rule dropped (for the case's artifacts)."""
        counts = self.counters()
        return {"netns": self.netns, "table": f"bridge {self.table}",
                "rules": [dict(rule.to_json(), **counts.get(rule.name, {})) for rule in self.rules]}

    def remove(self) -> None:
        """Deletes the table (idempotent: nothing to do when nothing was installed)."""
        if not self.rules:
            return
        self._nft(["delete", "table", "bridge", self.table], None, self._taps())
        self.rules = []

    def _install(self, rules: List[DropRule]) -> List[DropRule]:
        names = {rule.name for rule in self.rules}
        for rule in rules:
            if rule.name in names:
                raise ImpairmentError(f"namespace {self.netns}: {rule.name} is installed already")
        self._nft(["-f", "-"], ruleset(rules, self.table), sorted({rule.tap for rule in rules}))
        self.rules += rules
        return rules

    def _taps(self) -> List[str]:
        return sorted({rule.tap for rule in self.rules})

    def _nft(self, arguments: List[str], stdin: Optional[str], taps: List[str]) -> str:
        argv = ["ip", "netns", "exec", self.netns, "nft", *arguments]
        where = f"namespace {self.netns}, TAP {', '.join(taps) or '-'}"
        try:
            done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=NFT_TIMEOUT_S,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise ImpairmentError(f"{where}: {' '.join(argv)} did not finish within {NFT_TIMEOUT_S:g} s") from None
        except OSError as error:
            raise ImpairmentError(f"{where}: {' '.join(argv)}: {error}") from None
        if done.returncode != 0:
            raise ImpairmentError(f"{where}: {' '.join(argv)} exited {done.returncode}: "
                                  f"{done.stderr.strip() or done.stdout.strip()}")
        return done.stdout
