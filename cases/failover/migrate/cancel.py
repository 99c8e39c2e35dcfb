"""A migration cancelled after the guest released the primary: the source
plugs the primary back, the guest re-enslaves it, and traffic flows through
it again."""

import pytest

from vnetct.core.verdict import Due
from vnetct.failover.guest import (MAC, PRIMARY_ID, REPLUG_SEEN_S, REPLUG_SEEN_SOURCE, failover_formed,
                                   wait_for_guest_due)
from vnetct.failover.migration import reap_failed_target, start_migration
from vnetct.traffic.echo import assert_carried_by

SLOW = {"max-bandwidth": 1 << 20}  # 1 MiB/s: the transfer cannot finish before the cancel


@pytest.mark.rule("FO-MIG-SRC-05", "FO-DATA-01")
def test_while_active_replugs_on_source(vm_factory, case):
    migration = start_migration(vm_factory, case, "cancel", parameters=SLOW)
    source = migration.source
    migration.expect_source(f"UNPLUG_PRIMARY {PRIMARY_ID}", due=migration.after_migrate("FO-MIG-SRC-01"))
    migration.expect_active_after(migration.wait_release())

    case.step("cancelling the migration while it is active")
    source.record("migrate-cancel")
    migration.target.record("migration-failed")  # the cancel closes the stream under the target
    source.qmp.execute("migrate_cancel")
    cancelled, = migration.expect_source("MIGRATION cancelled")
    # QEMU keeps the released primary on its bus (query-pci lists it throughout, its BARs
    # unchanged: ACPI hot-plug keeps a partially unplugged device whole), so the re-plug
    # shows only in the guest, which must get the primary back within the bound. Judged
    # before the target is reaped: the source's duty does not wait on the target's end.
    wait_for_guest_due(source, failover_formed, "the primary re-enslaved on the source", Due(
        "FO-MIG-SRC-05", "MIGRATION cancelled", cancelled["host_ns"], REPLUG_SEEN_S, REPLUG_SEEN_SOURCE),
        migration.agent_mark)
    case.save_json("target-after-cancel.json", reap_failed_target(migration.target))
    if source.wire is not None:
        case.step("traffic through the re-plugged primary")
        assert_carried_by(source, case, MAC)
