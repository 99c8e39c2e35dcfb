"""A failover migration as the cases declare it: a negotiated source, a
target waiting for it on the same wire, and the migration started with
events on. The steps after that are the case's own."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import List, Optional

from vnetct.core.verdict import Due, due_event, require
from vnetct.failover.guest import PRIMARY_ID, FailoverGuest, failover_spec
from vnetct.failover.trace import wait_guest_release
from vnetct.vm.guest import Vm, VmSpec
from vnetct.core.native import HostError
from vnetct.failover.timeline import migration_timeline, traffic_series

EVENTS_ON = {"capabilities": [{"capability": "events", "state": True}]}

# Bounds of what the source owes, from their triggers (vnetct.core.verdict.Due).
# UNPLUG_PRIMARY and wait-unplug: emitted in the migration's setup, milliseconds
# after migrate on QEMU 10.0.2 (out-and-in: 2 ms and 4 ms); 5 s for a loaded TCG host.
SETUP_BOUND_S = 5.0
SETUP_BOUND_SOURCE = "emitted in the migration's setup (2-4 ms after migrate here); 5 s for a loaded host"
# active after the release: QEMU's wait-unplug loop re-checks every 250 ms
# (qemu_savevm_wait_unplug); 5 s covers the loop and a loaded TCG host.
ACTIVE_BOUND_S = 5.0
ACTIVE_BOUND_SOURCE = "QEMU re-checks the unplug every 250 ms; 5 s for a loaded host"
# The target's re-plug: FAILOVER_NEGOTIATED comes with the state's load, before RESUME
# (the trace checker judges that order); its absence is judged this long after RESUME.
REPLUG_BOUND_S = 5.0
REPLUG_BOUND_SOURCE = "due before RESUME (FO-MIG-TGT-02); 5 s after it for a loaded host"


@dataclass
class Migration:
    source: Vm
    target: Vm
    primary_name: str   # the guest's netdev of the primary on the source
    qmp_mark: int       # source QMP events before the migration
    agent_mark: int     # source agent events before the migration
    case: object = None
    negotiation: object = None
    traffic: object = None  # the case's vnetct.traffic.EchoStream, if it runs one
    begin_ns: int = 0

    def begin(self) -> "Migration":
        """Marks the event streams and sends `migrate` to the source. When the
        case ends, its timeline (and traffic series) go to results.json."""
        source, target = self.source, self.target
        self.qmp_mark = len(source.qmp.events)
        self.agent_mark = len(source.agent.events)
        self.begin_ns = time.monotonic_ns()
        self.case.at_finish(self.record_timeline)
        self.case.step(f"migrating {source.name} to {target.name}")
        source.record("migrate")
        source.qmp.execute("migrate", {"uri": target.migration_uri})
        return self

    def expect_source(self, *lines: str, due: Optional[Due] = None, timeout: float = 60.0) -> List[dict]:
        """The source's QMP events named by protocol lines, each seen since the
        migrate command: owed by the host within `due` (a miss names its rule),
        or else awaited within `timeout` (see expect_events)."""
        return expect_events(self.source, lines, self.qmp_mark, timeout, due)

    def expect_target(self, *lines: str, due: Optional[Due] = None, timeout: float = 120.0) -> List[dict]:
        """The target's QMP events named by protocol lines (since it started)."""
        return expect_events(self.target, lines, 0, timeout, due)

    def after_migrate(self, rule: str, bound_s: float = SETUP_BOUND_S) -> Due:
        """What the source owes from the migrate command on (UNPLUG_PRIMARY,
        wait-unplug): QEMU emits both in the migration's setup."""
        return Due(rule, "the migrate command", self.begin_ns, bound_s, SETUP_BOUND_SOURCE)

    def wait_release(self, timeout: float = 60.0) -> dict:
        """The guest's release of the primary the source asked for (the agent's
        netdev-removed; a guest's pace, not a host verdict), logged into the
        source's trace at its arrival time."""
        return wait_guest_release(self.source, PRIMARY_ID, self.primary_name, self.agent_mark, timeout)

    def expect_active_after(self, release: dict) -> dict:
        """MIGRATION active: never before the guest's release (FO-MIG-SRC-03),
        and due within ACTIVE_BOUND_S of it (FO-MIG-SRC-02: wait-unplug ends as
        soon as the primary is released)."""
        early = next((e for e in self.source.qmp.events[self.qmp_mark:] if e["name"] == "MIGRATION" and
                      (e["data"] or {}).get("status") == "active" and e["host_ns"] < release["host_ns"]), None)
        require(early is None, "FO-MIG-SRC-03", f"{self.source.name}: MIGRATION active arrived "
                f"{(release['host_ns'] - early['host_ns']) / 1e6 if early else 0:.0f} ms before the guest released "
                f"{self.primary_name}" if early else "")
        active, = self.expect_source("MIGRATION active", due=Due(
            "FO-MIG-SRC-02", "the guest's release of the primary", release["host_ns"], ACTIVE_BOUND_S,
            ACTIVE_BOUND_SOURCE))
        return active

    def record_timeline(self) -> None:
        stream = self.traffic
        report = getattr(stream, "report", None)
        self.case.timeline(migration_timeline(self.begin_ns, self.source, self.target, self.qmp_mark,
                                              self.agent_mark, report))
        if report is not None:
            self.case.series("traffic", traffic_series(stream.stream.sent_times(), stream.stream.arrivals(),
                                                       self.begin_ns))


# The data field a protocol line's argument names, per event.
EVENT_ARGUMENT = {"UNPLUG_PRIMARY": "device-id", "FAILOVER_NEGOTIATED": "device-id", "MIGRATION": "status",
                  "DEVICE_DELETED": "device"}


def expect_events(vm, lines, from_index: int, timeout: float, due: Optional[Due] = None) -> List[dict]:
    """Waits for one QMP event per protocol line ("UNPLUG_PRIMARY hostdev0",
    "MIGRATION wait-unplug", "RESUME"), each from event `from_index` on (the
    rules, not a release's habits, decide any order between them), all
    within `due` (an event the host owes: a miss violates due.rule) or else
    one `timeout`. Returns the events in the lines' order."""
    deadline = time.monotonic() + timeout
    events = []
    for line in lines:
        name, _, argument = line.partition(" ")
        match = {EVENT_ARGUMENT[name]: argument} if argument else None
        if due is not None:
            events.append(due_event(vm, name, match, from_index, due))
        else:
            events.append(vm.qmp.wait_event(name, match, from_index,
                                            timeout=max(0.0, deadline - time.monotonic())))
    return events


# Native PCIe hotplug (pciehp) instead of q35's default ACPI hotplug.
NATIVE_PCIEHP = ["-global", "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off"]


def prepare_migration(factory, case, name: str, parameters: Optional[dict] = None,
                      extra_args: Optional[list] = None, kernel_args: Optional[list] = None,
                      spec: Optional[VmSpec] = None) -> Migration:
    """A negotiated failover source and its waiting target, not migrating yet:
    the case may start traffic first, then call `begin()`. `spec` replaces the
    default failover_spec (its name is kept); `extra_args`/`kernel_args` are
    appended to it."""
    spec = spec or failover_spec(f"{name}-source")
    spec.extra_args += extra_args or []
    spec.kernel_args += kernel_args or []
    source = factory.migration_source(spec)
    negotiation = FailoverGuest(source).negotiate()
    target = factory.start_target(source, f"{name}-target")
    case.uses(source, target)
    source.qmp.execute("migrate-set-capabilities", EVENTS_ON)  # the target set its own at start
    if parameters:
        source.qmp.execute("migrate-set-parameters", parameters)
    return Migration(source, target, negotiation.role("primary")["name"], 0, 0, case, negotiation)


def start_migration(factory, case, name: str, parameters: Optional[dict] = None,
                    extra_args: Optional[list] = None, kernel_args: Optional[list] = None,
                    spec: Optional[VmSpec] = None) -> Migration:
    migration = prepare_migration(factory, case, name, parameters, extra_args, kernel_args, spec)
    return migration.begin()


def migration_statuses(vm, from_index: int = 0) -> list:
    """The MIGRATION statuses `vm` reported from event `from_index` on."""
    return [e["data"]["status"] for e in vm.qmp.events[from_index:] if e["name"] == "MIGRATION"]


def reap_failed_target(target) -> dict:
    """A target whose incoming migration broke (a cancel or a failure on the
    source) reports failed and exits (-incoming exits on a failed load): its
    statuses and exit status."""
    try:
        target.qmp.wait_event("MIGRATION", {"status": "failed"}, 0, timeout=30)
    except HostError:
        pass  # QEMU may exit before the event reaches us; the trace judges what arrived
    status = target.wait_exited(timeout=10.0)
    return {"target_statuses": migration_statuses(target), "target_exit": status}
