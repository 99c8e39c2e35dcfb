"""A failover migration as the cases declare it: a negotiated source, a
target waiting for it on the same wire, and the migration started with
events on. The steps after that are the case's own."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import List, Optional

from vnetct.failover.guest import FailoverGuest, failover_spec
from vnetct.vm.guest import Vm, VmSpec
from vnetct.core.native import HostError
from vnetct.failover.timeline import migration_timeline, traffic_series

EVENTS_ON = {"capabilities": [{"capability": "events", "state": True}]}


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

    def expect_source(self, *lines: str, timeout: float = 60.0) -> List[dict]:
        """The source's QMP events named by protocol lines, each seen since the
        migrate command, all within `timeout` (see expect_events)."""
        return expect_events(self.source, lines, self.qmp_mark, timeout)

    def expect_target(self, *lines: str, timeout: float = 120.0) -> List[dict]:
        """The target's QMP events named by protocol lines (since it started)."""
        return expect_events(self.target, lines, 0, timeout)

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


def expect_events(vm, lines, from_index: int, timeout: float) -> List[dict]:
    """Waits for one QMP event per protocol line ("UNPLUG_PRIMARY hostdev0",
    "MIGRATION wait-unplug", "RESUME"), each from event `from_index` on (the
    rules, not a release's habits, decide any order between them), all
    within one `timeout`. Returns the events in the lines' order."""
    deadline = time.monotonic() + timeout
    events = []
    for line in lines:
        name, _, argument = line.partition(" ")
        match = {EVENT_ARGUMENT[name]: argument} if argument else None
        events.append(vm.qmp.wait_event(name, match, from_index, timeout=max(0.0, deadline - time.monotonic())))
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
