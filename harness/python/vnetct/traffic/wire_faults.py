"""Wire impairments (vnetct.traffic.impair) that a seeded fault names
(vnetct.faults.catalog `impair`, `./vnetct run --fault NAME`), installed at
named points of a case, to show a datapath check failing on purpose. A plan:

    POINT:NIC:KIND=VALUE[;...]

POINT  where the harness installs it, on the VM it is at:
       stream-start  the echo stream's first echo came back (EchoStream.start)
       steady        the stream ran clean for its settle span (EchoStream.wait_clean)
       target-start  a migration target is about to start (VmFactory.start_target), on the source
       target-ports  a migration target's TAPs join the wire (connect_target_ports)
NIC    the device id of the NIC whose TAP is impaired (hostdev0: the primary)
KIND   loss=PERCENT (both directions), loss=PERCENT/from-guest, loss=PERCENT/to-guest,
       blackout=FRAMES (the first FRAMES frames the guest sends by that port)

Each point applies once per VM. The cases' conftest activates the plan for a
case and saves what each rule dropped (impairments.json) before the case's
namespaces go."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

from vnetct.traffic.impair import Direction, Impairment, tap_of

PLAN = "impairment plan"
POINTS = ("stream-start", "steady", "target-start", "target-ports")


@dataclass(frozen=True)
class PlannedImpairment:
    point: str
    nic: str
    kind: str          # loss | blackout
    value: float
    direction: Direction

    def describe(self) -> str:
        return f"{self.point}:{self.nic}:{self.kind}={self.value:g}/{self.direction.value}"


def parse(text: str) -> List[PlannedImpairment]:
    planned = []
    for spec in filter(None, (part.strip() for part in text.split(";"))):
        try:
            point, nic, action = spec.split(":")
            kind, value = action.split("=")
            value, _, direction = value.partition("/")
        except ValueError:
            raise ValueError(f"{PLAN}: {spec!r} is not POINT:NIC:KIND=VALUE") from None
        if point not in POINTS:
            raise ValueError(f"{PLAN}: {spec!r}: unknown point {point!r} (known: {', '.join(POINTS)})")
        if kind == "loss":
            chosen = Direction(direction) if direction else Direction.BOTH
        elif kind == "blackout" and not direction:
            chosen = Direction.FROM_GUEST
        else:
            raise ValueError(f"{PLAN}: {spec!r}: the kind is loss=PERCENT[/DIRECTION] or blackout=FRAMES")
        planned.append(PlannedImpairment(point, nic, kind, float(value), chosen))
    return planned


class Plan:
    """The impairments of one case and the ones installed so far."""

    def __init__(self, planned: List[PlannedImpairment], step=lambda text: None):
        self.planned = planned
        self.step = step
        self.applied: List[dict] = []
        self._done: set = set()
        self._by_netns: Dict[str, Impairment] = {}

    def at(self, point: str, vm) -> None:
        for planned in self.planned:
            key = (planned, vm.name)
            if planned.point != point or key in self._done or getattr(vm, "wire", None) is None:
                continue
            self._done.add(key)
            tap = tap_of(vm, planned.nic)
            impairment = self._by_netns.setdefault(vm.wire.netns, Impairment(vm.wire))
            if planned.kind == "loss":
                rules = impairment.random_loss(tap, planned.value, planned.direction)
            else:
                rules = impairment.blackout(tap, int(planned.value), planned.direction)
            self.applied.append({"planned": planned.describe(), "vm": vm.name, "tap": tap,
                                 "rules": [rule.name for rule in rules]})
            self.step(f"wire impairment at {point}: {'; '.join(rule.description for rule in rules)} "
                      f"({vm.name}'s {planned.nic})")

    def close(self) -> dict:
        """Reads every rule's counters, removes the tables; returns the evidence."""
        evidence = {"planned": [p.describe() for p in self.planned], "applied": self.applied, "wires": []}
        for impairment in self._by_netns.values():
            evidence["wires"].append(impairment.evidence())
            impairment.remove()
        return evidence


_active: Optional[Plan] = None


def planned_for(run) -> List[PlannedImpairment]:
    """The impairments of the run's seeded fault, if it names any."""
    name = getattr(getattr(run, "sut", None), "options", None) and run.sut.options.fault
    if not name:
        return []
    from vnetct.faults.catalog import fault_named
    return parse(fault_named(name).impair)


def activate(plan: Plan) -> None:
    global _active
    _active = plan


def deactivate() -> Optional[dict]:
    global _active
    plan, _active = _active, None
    return plan.close() if plan is not None else None


def at(point: str, vm) -> None:
    """The harness's hook: installs what the active plan names for `point` on `vm` (nothing without one)."""
    if _active is not None:
        _active.at(point, vm)


# The impairments each datapath check was shown failing under against QEMU
# 10.0.2 (VNETCT_IMPAIR, -k selection, the rule the failure names, the check):
# for `vnetct run --fault` and the selftest to take over.
# A 60-frame (300 ms) blackout of the re-plugged primary does NOT fail: QEMU
# 10.0.2's own re-plug loss (46-84 datagrams, 230-400 ms, between the primary's
# hot-add and its link-up) is as large, so the guest's first 60 frames by the
# primary fall where the natural loss is (run /tmp/dp-blackout: passed, the rule
# dropped 60 of 511). 150 frames (750 ms) break the re-plug bound's length.
DEMONSTRATIONS = [
    ("target-ports:hostdev0:blackout=150", "out-and-in and acpi", "FO-DATA-01",
     "out_and_in re-plug LossBound: the loss is longer than QEMU's e1000e autonegotiation allows"),
    ("steady:hostdev0:loss=1", "out-and-in and acpi", "FO-DATA-01",
     "out_and_in steady state before (and the re-plug or switch bounds where the loss lands)"),
    ("steady:hostdev0:loss=1", "cancel", "FO-DATA-01", "echo.assert_carried_by: the judged span loses nothing"),
]
