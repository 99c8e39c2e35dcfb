"""A migration cancelled after the guest released the primary: the source
plugs the primary back, the guest re-enslaves it, and traffic flows through
it again."""

import pytest

from vnetct.failover.guest import MAC, PRIMARY_ID, failover_formed, wait_for_guest
from vnetct.failover.migration import reap_failed_target, start_migration
from vnetct.failover.trace import record_guest_release
from vnetct.traffic.echo import assert_carried_by

SLOW = {"max-bandwidth": 1 << 20}  # 1 MiB/s: the transfer cannot finish before the cancel


@pytest.mark.rule("FO-MIG-SRC-05")
def test_while_active_replugs_on_source(vm_factory, case):
    migration = start_migration(vm_factory, case, "cancel", parameters=SLOW)
    source = migration.source
    migration.expect_source(f"UNPLUG_PRIMARY {PRIMARY_ID}", "MIGRATION active")
    record_guest_release(source, PRIMARY_ID, migration.primary_name, migration.agent_mark)

    case.step("cancelling the migration while it is active")
    source.record("migrate-cancel")
    migration.target.record("migration-failed")  # the cancel closes the stream under the target
    source.qmp.execute("migrate_cancel")
    migration.expect_source("MIGRATION cancelled")
    case.save_json("target-after-cancel.json", reap_failed_target(migration.target))
    agent_after_cancel = len(source.agent.events)
    assert PRIMARY_ID in source.pci_ids(), "the primary was not plugged back on the source after the cancel"
    wait_for_guest(source, failover_formed, "the primary re-enslaved on the source", 60.0, agent_after_cancel)
    if source.wire is not None:
        case.step("traffic through the re-plugged primary")
        assert_carried_by(source, case, MAC)
