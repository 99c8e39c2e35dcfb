"""Failover across a live migration, out and in: the source asks the guest for
the primary, waits until it is released, migrates over the standby, and the
target plugs the primary back for the guest.

Three witnesses: QMP on both sides, the guest agent, and a paced UDP echo
stream from the wire's peer through the whole migration (vnetct.traffic.echo).
Phases of the stream, by the time a datagram was sent: before (until
UNPLUG_PRIMARY), wait-unplug (until MIGRATION active), migration (until the
target's RESUME), re-plug (until the re-plugged primary carries traffic),
after."""

import time

import pytest

from vnetct.vm.factory import connect_target_ports
from vnetct.failover.guest import MAC, PRIMARY_ID, STANDBY_ID, failover_formed, wait_for_guest
from vnetct.failover.migration import NATIVE_PCIEHP, REPLUG_BOUND_S, REPLUG_BOUND_SOURCE, prepare_migration
from vnetct.core.native import HostTimeout
from vnetct.core.verdict import Due, require
from vnetct.traffic.echo import EchoStream, describe_losses, phase, snapshot

# How long the stream runs on each side of the migration: one second of steady
# traffic through the primary before, and through the re-plugged primary after.
STEADY_S = 1.0
# A loss window must end this soon after the event that restores the path:
# 50 datagrams at 200/s, time for a TCG guest to take over on the other slave.
RECOVERY_MS = 250
# The guest's netdev-removed for the primary is sent after the device is gone;
# an echo still in flight from the primary can arrive up to this much later.
IN_FLIGHT_NS = 20_000_000


def _seconds(later, earlier):
    return round((later - earlier) / 1e9, 3)


def _wait_primary_carrying(vm, stream, timeout: float):
    """The first guest report in which the re-plugged primary has sent
    something: re-read after each further echo, bounded by `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        shot = snapshot(vm, "primary-carrying", MAC)
        if shot.counters.get("primary", {}).get("tx_packets", 0) > 0:
            return shot
        if time.monotonic() > deadline:
            raise HostTimeout(f"the re-plugged primary sent nothing within {timeout:.0f} s: {shot.counters}")
        stream.wait_echoes(1, max(0.5, deadline - time.monotonic()))


def _check_carrier(case, label, carrier, other, echoes, exact_other=True):
    case.metric(f"{label}_echoes", echoes)
    case.metric(f"{label}_carrier_tx", carrier)
    case.metric(f"{label}_other_tx", other)
    require(carrier >= echoes, "FO-DATA-01", f"{label}: {echoes} echoes came back but the expected slave sent only "
            f"{carrier} frames (the other slave sent {other})")
    if exact_other:
        require(other == 0, "FO-DATA-01", f"{label}: the other slave sent {other} frames while the expected one was up")


@pytest.mark.rule("FO-MIG-SRC-01", "FO-MIG-SRC-02", "FO-MIG-SRC-03", "FO-MIG-TGT-01", "FO-MIG-TGT-02")
@pytest.mark.parametrize("hotplug", ["acpi", "pciehp"])
def test_unplug_migrate_replug(vm_factory, case, hotplug):
    # acpi: q35's default; pciehp: native PCIe hotplug, whose eject waits for the attention button.
    migration = prepare_migration(vm_factory, case, f"mig-{hotplug}",
                                  extra_args=NATIVE_PCIEHP if hotplug == "pciehp" else [])
    source, target = migration.source, migration.target
    stream = None
    if source.wire is not None:
        stream = EchoStream(source, case, migration.negotiation.role("master")["name"]).start()
        migration.traffic = stream  # its phases, loss windows and RTTs go into the case's timeline
        steady = int(STEADY_S * stream.rate_pps)
        clean_ns = stream.wait_clean(STEADY_S)
        before_0 = snapshot(source, "before-start", MAC)
        stream.wait_echoes(steady, 30)
        before_1 = snapshot(source, "before-end", MAC)
        # The guest's view of the steady state (what it logged while the stream ran).
        case.save_json("source-kernel-log.json", source.request("kernel-log")["lines"])
    else:
        case.step("no datapath in this SUT profile: protocol only")
    # The host's view of the target before the state is loaded (FO-MIG-TGT-01: every primary
    # hidden; the trace checker judges it); the end-of-case snapshot is the view after it.
    target.pci_devices()
    migration.begin()

    # Source: the primary is requested, and the migration waits until the guest let it go.
    unplug, = migration.expect_source(f"UNPLUG_PRIMARY {PRIMARY_ID}", due=migration.after_migrate("FO-MIG-SRC-01"))
    wait_unplug, = migration.expect_source("MIGRATION wait-unplug", due=migration.after_migrate("FO-MIG-SRC-02"))
    release = migration.wait_release()
    active = migration.expect_active_after(release)
    # The target runs the guest from RESUME on: its TAPs join the wire then (VmFactory.target_of).
    resume, = migration.expect_target("RESUME")
    ports_ns = connect_target_ports(target)
    completed, = migration.expect_source("MIGRATION completed", timeout=120)

    # Target: the primary comes back, the guest re-enslaves it.
    case.step("waiting for the target's guest to re-enslave the primary")
    if ports_ns is not None:
        case.metric("target_ports_delay", round((ports_ns - resume["host_ns"]) / 1e6, 1), "ms")  # RESUME to wire
    migration.expect_target(f"FAILOVER_NEGOTIATED {STANDBY_ID}", due=Due(
        "FO-MIG-TGT-02", "the target's RESUME", resume["host_ns"], REPLUG_BOUND_S, REPLUG_BOUND_SOURCE))
    netdevs = wait_for_guest(target, failover_formed, "the primary re-enslaved on the target", 60.0)
    formed_ns = time.monotonic_ns()
    back = next(n for n in netdevs if n.get("failover_role") == "primary")
    assert back["mac"] == MAC and back["parent_bus"] == "pci"
    case.save_json("target-netdevs.json", netdevs)
    case.metric("guest_primary_driver", back["driver"])  # the VF driver, as the target's guest sees it

    case.metric("unplug_latency", _seconds(release["host_ns"], unplug["host_ns"]), "s")
    case.metric("wait_unplug_duration", _seconds(active["host_ns"], wait_unplug["host_ns"]), "s")
    case.metric("migration_total", _seconds(completed["host_ns"], unplug["host_ns"]), "s")
    info = source.qmp.execute("query-migrate")
    if "downtime" in info:
        case.metric("qemu_downtime", info["downtime"], "ms")
    case.metric("replug_enslaved_latency", _seconds(formed_ns, resume["host_ns"]), "s")

    if stream is not None:
        case.step("waiting for the re-plugged primary to carry the echoes")
        carrying = _wait_primary_carrying(target, stream, 30.0)
        case.metric("replug_latency", _seconds(carrying.answered_ns, resume["host_ns"]), "s")  # RESUME to carrying
        stream.wait_echoes(steady, 30)
        after = snapshot(target, "after-end", MAC)
        report = stream.stop([("settle", stream.started_ns), ("before", clean_ns), ("wait-unplug", unplug["host_ns"]),
                              ("migration", active["host_ns"]), ("re-plug", resume["host_ns"]),
                              ("after", carrying.answered_ns)])
        case.metric("switchover_lost", sum(phase(report, name)["lost"] for name in ("wait-unplug", "migration",
                                                                                    "re-plug")))
        case.save_json("slave-counters.json", [s.to_json() for s in (before_0, before_1, carrying, after)])
        _judge_datapath(case, stream, release, before_0, before_1, carrying, after)
        _judge_continuity(case, report, {"wait-unplug": ("the guest's release", release["host_ns"]),
                                         "migration": ("the target's ports on the wire", ports_ns),
                                         "re-plug": ("the re-plugged primary carrying", carrying.answered_ns)})


def _delta(later, earlier, role):
    return later.counters[role]["tx_packets"] - earlier.counters[role]["tx_packets"]


def _judge_datapath(case, stream, release, before_0, before_1, carrying, after):
    """Which slave sent the echoes: the primary before, the standby from the
    release until the primary is back, the re-plugged primary after."""
    _check_carrier(case, "before", _delta(before_1, before_0, "primary"), _delta(before_1, before_0, "standby"),
                   stream.echoes_between(before_0.answered_ns, before_1.asked_ns))
    # From the release on the standby is the only slave until the re-plugged primary
    # carries: it sent every echo of that window except those the new primary sent.
    new_primary = carrying.counters["primary"]["tx_packets"]
    echoes = stream.echoes_between(release["host_ns"] + IN_FLIGHT_NS, carrying.asked_ns)
    _check_carrier(case, "standby_window", _delta(carrying, before_1, "standby") + new_primary, 0, echoes)
    _check_carrier(case, "after", _delta(after, carrying, "primary"), _delta(after, carrying, "standby"),
                   stream.echoes_between(carrying.answered_ns, after.asked_ns))


def _judge_continuity(case, report, recovery_events):
    """Steady state (before, after): nothing lost, duplicated or reordered.
    The three switch phases: every loss window ends within RECOVERY_MS of the
    event that gives the traffic its path back (the guest's release of the
    primary: the standby carries; the target's RESUME: its ports join the wire;
    the re-plugged primary sending). Duplicates and reordering there are
    recorded, not judged: frames that reached a TAP whose device could not
    receive yet are delivered when it can (see the closing note of issue 4)."""
    for name in ("before", "after"):
        steady = phase(report, name)
        require(steady["lost"] == 0, "FO-DATA-01", f"steady state lost traffic: {describe_losses(steady)}")
        require(steady["duplicates"] == 0 and steady["reordered"] == 0, "FO-DATA-01", f"phase {name}: {steady}")
    late = []
    for name, (what, event_ns) in recovery_events.items():
        windows = phase(report, name)["loss_windows"]
        worst = max((w["end_ns"] - event_ns for w in windows), default=None)
        if worst is not None:
            case.metric(f"recovery_{name.replace('-', '_')}", round(worst / 1e6, 1), "ms")
            if worst > RECOVERY_MS * 1e6:
                late.append(f"{name}: traffic came back {worst / 1e6:.0f} ms after {what} "
                            f"({describe_losses(phase(report, name))})")
    require(not late, "FO-DATA-01", "; ".join(late))
