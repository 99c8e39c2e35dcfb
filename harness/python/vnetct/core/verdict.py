"""How a failure names the rule it breaks.

A check that finds the SUT breaking a rule raises `RuleViolation(rule, ...)`:
its message starts with the rule id ("FO-MIG-SRC-01: ..."), and the plugin
records the id as the case's violated rule (results.json `violated_rules`),
which is all the rules table counts as violated. A failure that names no rule
(a guest that never booted, a harness error) judges nothing.

`due()` is the bounded wait: an event the host owes is awaited from the moment
it became due (its trigger) for a stated bound, and its absence is a violation
of the rule that owed it, not a generic timeout."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence

class RuleViolation(AssertionError):
    """The SUT broke `rules` (one id, or several when one observation breaks
    each of them); `evidence` is what was seen (saved with the case)."""

    def __init__(self, rules, message: str, evidence: Optional[dict] = None):
        self.rules: List[str] = [rules] if isinstance(rules, str) else list(rules)
        self.evidence = evidence
        super().__init__(f"{', '.join(self.rules)}: {message}")


def require(condition: bool, rule: str, message: str, evidence: Optional[dict] = None) -> None:
    """An assertion that names its rule."""
    if not condition:
        raise RuleViolation(rule, message, evidence)


def rules_named(error: BaseException, known: Iterable[str]) -> List[str]:
    """The rule ids a failure names: a RuleViolation's, else the ids an
    AssertionError's message starts with ("FO-DATA-01: ..."), kept only if
    they are known rules. Anything else names none."""
    known = set(known)
    if isinstance(error, RuleViolation):
        return [rule for rule in error.rules if rule in known] or list(error.rules)
    if not isinstance(error, AssertionError):
        return []
    head = str(error).split(":", 1)[0] if ":" in str(error) else ""
    ids = [part.strip() for part in head.split(",")]
    return ids if ids and all(rule in known for rule in ids) else []


@dataclass(frozen=True)
class Due:
    """What the host owes from a trigger on: `rule` is broken if it has not
    happened within `bound_s` of `trigger_ns` (CLOCK_MONOTONIC). `source`
    says where the bound comes from (it is printed with a violation)."""
    rule: str
    trigger: str
    trigger_ns: int
    bound_s: float
    source: str = ""

    @property
    def deadline_ns(self) -> int:
        return self.trigger_ns + int(self.bound_s * 1e9)

    def remaining(self) -> float:
        return max(0.0, (self.deadline_ns - time.monotonic_ns()) / 1e9)

    def describe(self) -> str:
        bound = f"{self.bound_s:g} s of {self.trigger}"
        return f"within {bound}" + (f" (bound: {self.source})" if self.source else "")


def _brief(events: Sequence[dict], limit: int = 12) -> str:
    names = []
    for event in events[-limit:]:
        data = event.get("data") or {}
        argument = data.get("status") or data.get("device-id") or data.get("device") or ""
        names.append(f"{event['name']} {argument}".strip())
    return ", ".join(names) or "none"


def due_event(vm, name: str, match: Optional[dict], from_index: int, due: Due) -> dict:
    """The QMP event `name` (data holding `match`) from event `from_index` on,
    waited for until the due's deadline; its absence violates `due.rule`."""
    from vnetct.core.native import HostTimeout

    try:
        return vm.qmp.wait_event(name, match, from_index, timeout=due.remaining())
    except HostTimeout:
        what = f"{name} {' '.join(str(v) for v in (match or {}).values())}".strip()
        seen = _brief(vm.qmp.events[from_index:])
        raise RuleViolation(due.rule, f"{vm.name}: QMP event {what} not seen {due.describe()}; "
                                      f"events since: {seen}",
                            {"vm": vm.name, "awaited": what, "trigger": due.trigger,
                             "bound_s": due.bound_s}) from None


def absent_event(vm, name: str, match: Optional[dict], from_index: int, rule: str, settle_s: float,
                 why: str) -> None:
    """Absence asserted after a stated settle window: `name` must not arrive
    from event `from_index` on within `settle_s` from now."""
    from vnetct.core.native import HostTimeout

    try:
        event = vm.qmp.wait_event(name, match, from_index, timeout=settle_s)
    except HostTimeout:
        return
    raise RuleViolation(rule, f"{vm.name}: QMP event {name} {event.get('data')} arrived, but {why} "
                              f"(watched for {settle_s:g} s)")
