// Failover model: the migration source (FO-MIG-SRC-*), awkward orders included.
#include <array>

#include "failover_model_test_support.hpp"

namespace vnetct::reference_impl {
namespace {

using namespace test_support;

class FailoverSourceMigration_test : public FailoverModel_fixture {
  protected:
    void migrate_to_wait_unplug(Milliseconds now) {
        ASSERT_TRUE(m_sut.migrate(now).has_value());
        ASSERT_EQ(m_sut.migration_state(), MigrationState::WaitUnplug);
        (void)m_sut.take_outputs();
    }
};

// The order QEMU 10 was seen to follow (observed on 10.0.2 under the harness, ACPI hotplug), with no DEVICE_DELETED.
TEST_F(FailoverSourceMigration_test, FO_MIG_SRC_01_02_03_MigrationWaitsForTheGuestsRelease) {
    start_negotiated();

    ASSERT_TRUE(m_sut.migrate(at(100)).has_value());
    EXPECT_EQ(outputs(),
              (Lines{"MIGRATION setup", "UNPLUG_PRIMARY hostdev0", "MIGRATION wait-unplug"}));
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::UnplugRequested);
    EXPECT_EQ(m_sut.transfer_done(at(150)).error().code, ModelErrc::TransferNotRunning);

    ASSERT_TRUE(m_sut.guest_released("hostdev0", at(350)).has_value());
    EXPECT_EQ(outputs(), (Lines{"unplugged hostdev0", "MIGRATION active"}));
    EXPECT_EQ(m_sut.visible_devices(), Lines{"net1"});

    ASSERT_TRUE(m_sut.transfer_done(at(1200)).has_value());
    EXPECT_EQ(outputs(), (Lines{"STOP", "MIGRATION device", "MIGRATION completed"}));
    EXPECT_EQ(m_sut.migration_state(), MigrationState::Completed);
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::Released);
    EXPECT_FALSE(m_sut.guest_running());
}

TEST_F(FailoverSourceMigration_test, FO_MIG_SRC_01_OnlyNegotiatedPrimariesAreUnplugged) {
    start_with({standby_spec("net1", "root1"), primary_spec("hostdev0", "net1", "root2"),
                standby_spec("net2", "root3"), primary_spec("hostdev1", "net2", "root4")});
    ASSERT_TRUE(m_sut.guest_ack_features("net2", true, at(10)).has_value());
    (void)m_sut.take_outputs();

    ASSERT_TRUE(m_sut.migrate(at(100)).has_value());

    EXPECT_EQ(outputs(),
              (Lines{"MIGRATION setup", "UNPLUG_PRIMARY hostdev1", "MIGRATION wait-unplug"}));
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::Hidden);
}

TEST_F(FailoverSourceMigration_test, FO_MIG_SRC_02_NothingHeldSkipsWaitUnplug) {
    start_with({standby_spec("net1", "root1")});

    ASSERT_TRUE(m_sut.migrate(at(100)).has_value());

    EXPECT_EQ(outputs(), (Lines{"MIGRATION setup", "MIGRATION active"}));
}

TEST_F(FailoverSourceMigration_test, FO_MIG_SRC_02_03_TwoPairsReleasedInEitherOrder) {
    for (const auto& order : {std::array{"hostdev0", "hostdev1"}, std::array{"hostdev1", "hostdev0"}}) {
        SCOPED_TRACE(std::string{"first released: "} + order[0]);
        start_negotiated(2);
        ASSERT_TRUE(m_sut.migrate(at(100)).has_value());
        EXPECT_EQ(outputs(), (Lines{"MIGRATION setup", "UNPLUG_PRIMARY hostdev0",
                                    "UNPLUG_PRIMARY hostdev1", "MIGRATION wait-unplug"}));

        ASSERT_TRUE(m_sut.guest_released(order[0], at(200)).has_value());
        EXPECT_EQ(outputs(), Lines{std::string{"unplugged "} + order[0]});
        EXPECT_EQ(m_sut.migration_state(), MigrationState::WaitUnplug);

        ASSERT_TRUE(m_sut.guest_released(order[1], at(300)).has_value());
        EXPECT_EQ(outputs(), (Lines{std::string{"unplugged "} + order[1], "MIGRATION active"}));
    }
}

TEST_F(FailoverSourceMigration_test, FO_MIG_SRC_04_CancelInWaitUnplugThenRelease) {
    start_negotiated();
    migrate_to_wait_unplug(at(100));

    ASSERT_TRUE(m_sut.migrate_cancel(at(150)).has_value());
    EXPECT_EQ(outputs(), Lines{"MIGRATION cancelling"});
    ASSERT_TRUE(m_sut.tick(at(60'000)).has_value());  // no timeout: still waiting
    EXPECT_EQ(m_sut.migration_state(), MigrationState::Cancelling);

    ASSERT_TRUE(m_sut.guest_released("hostdev0", at(60'100)).has_value());
    EXPECT_EQ(outputs(), (Lines{"unplugged hostdev0", "MIGRATION cancelled", "plugged hostdev0"}));
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::Plugged);
    EXPECT_EQ(m_sut.visible_devices(), (Lines{"net1", "hostdev0"}));
}

TEST_F(FailoverSourceMigration_test, FO_MIG_SRC_04_CancellingWaitsForBothPairs) {
    start_negotiated(2);
    migrate_to_wait_unplug(at(100));
    ASSERT_TRUE(m_sut.guest_released("hostdev1", at(120)).has_value());
    ASSERT_TRUE(m_sut.migrate_cancel(at(150)).has_value());
    EXPECT_EQ(outputs(), (Lines{"unplugged hostdev1", "MIGRATION cancelling"}));

    ASSERT_TRUE(m_sut.guest_released("hostdev0", at(200)).has_value());

    EXPECT_EQ(outputs(), (Lines{"unplugged hostdev0", "MIGRATION cancelled", "plugged hostdev0",
                                "plugged hostdev1"}));
}

TEST_F(FailoverSourceMigration_test, FO_MIG_SRC_04_MigrateAgainAfterCancel) {
    start_negotiated();
    migrate_to_wait_unplug(at(100));
    ASSERT_TRUE(m_sut.migrate_cancel(at(150)).has_value());
    ASSERT_TRUE(m_sut.guest_released("hostdev0", at(200)).has_value());
    (void)m_sut.take_outputs();

    ASSERT_TRUE(m_sut.migrate(at(300)).has_value());

    EXPECT_EQ(outputs(),
              (Lines{"MIGRATION setup", "UNPLUG_PRIMARY hostdev0", "MIGRATION wait-unplug"}));
}

TEST_F(FailoverSourceMigration_test, FO_MIG_SRC_05_CancelAfterReleasePlugsBack) {
    start_negotiated();
    migrate_to_wait_unplug(at(100));
    ASSERT_TRUE(m_sut.guest_released("hostdev0", at(200)).has_value());
    (void)m_sut.take_outputs();

    ASSERT_TRUE(m_sut.migrate_cancel(at(300)).has_value());

    EXPECT_EQ(outputs(), (Lines{"MIGRATION cancelling", "MIGRATION cancelled", "plugged hostdev0"}));
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::Plugged);
}

TEST_F(FailoverSourceMigration_test, FO_MIG_SRC_05_FailureAfterReleasePlugsBack) {
    start_negotiated();
    migrate_to_wait_unplug(at(100));
    ASSERT_TRUE(m_sut.guest_released("hostdev0", at(200)).has_value());
    (void)m_sut.take_outputs();

    ASSERT_TRUE(m_sut.migration_failed(at(300)).has_value());

    EXPECT_EQ(outputs(), (Lines{"MIGRATION failed", "plugged hostdev0"}));
    EXPECT_TRUE(m_sut.guest_running());
}

TEST_F(FailoverSourceMigration_test, FO_MIG_SRC_05_FailureInWaitUnplugPlugsBackOnLaterRelease) {
    start_negotiated(2);
    migrate_to_wait_unplug(at(100));
    ASSERT_TRUE(m_sut.guest_released("hostdev0", at(200)).has_value());
    (void)m_sut.take_outputs();

    ASSERT_TRUE(m_sut.migration_failed(at(300)).has_value());
    EXPECT_EQ(outputs(), (Lines{"MIGRATION failed", "plugged hostdev0"}));
    EXPECT_EQ(state_of("hostdev1"), PrimaryState::UnplugRequested);

    ASSERT_TRUE(m_sut.guest_released("hostdev1", at(400)).has_value());
    EXPECT_EQ(outputs(), (Lines{"unplugged hostdev1", "plugged hostdev1"}));
}

// Cancel racing completion, both ways round.
TEST_F(FailoverSourceMigration_test, FO_MIG_SRC_06_CancelAfterCompletionHasNoEffect) {
    start_negotiated();
    migrate_to_wait_unplug(at(100));
    ASSERT_TRUE(m_sut.guest_released("hostdev0", at(200)).has_value());
    ASSERT_TRUE(m_sut.transfer_done(at(900)).has_value());
    (void)m_sut.take_outputs();

    ASSERT_TRUE(m_sut.migrate_cancel(at(901)).has_value());

    EXPECT_EQ(outputs(), Lines{});
    EXPECT_EQ(m_sut.migration_state(), MigrationState::Completed);
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::Released);
}

TEST_F(FailoverSourceMigration_test, FO_MIG_SRC_05_06_TransferDoneAfterCancelHasNoEffect) {
    start_negotiated();
    migrate_to_wait_unplug(at(100));
    ASSERT_TRUE(m_sut.guest_released("hostdev0", at(200)).has_value());
    ASSERT_TRUE(m_sut.migrate_cancel(at(899)).has_value());
    (void)m_sut.take_outputs();

    ASSERT_TRUE(m_sut.transfer_done(at(900)).has_value());

    EXPECT_EQ(outputs(), Lines{});
    EXPECT_EQ(m_sut.migration_state(), MigrationState::Cancelled);
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::Plugged);
}

TEST_F(FailoverSourceMigration_test, FO_MIG_SRC_07_GuestThatNeverReleasesKeepsWaitUnplugForever) {
    start_negotiated();
    migrate_to_wait_unplug(at(100));

    ASSERT_TRUE(m_sut.tick(at(3'600'000)).has_value());

    EXPECT_EQ(outputs(), Lines{});
    EXPECT_EQ(m_sut.migration_state(), MigrationState::WaitUnplug);
}

TEST_F(FailoverSourceMigration_test, FO_MIG_SRC_07_UnplugTimeoutFailsTheMigration) {
    start_negotiated(2, with_timeouts(Milliseconds{5000}, std::nullopt));
    migrate_to_wait_unplug(at(100));
    ASSERT_TRUE(m_sut.guest_released("hostdev1", at(200)).has_value());
    (void)m_sut.take_outputs();

    ASSERT_TRUE(m_sut.tick(at(5099)).has_value());
    EXPECT_EQ(outputs(), Lines{});
    ASSERT_TRUE(m_sut.tick(at(5100)).has_value());

    const std::vector<Output> produced = m_sut.take_outputs();
    EXPECT_EQ(trace(produced),
              (Lines{"warning hostdev0 FO-MIG-SRC-07", "MIGRATION failed", "plugged hostdev1"}));
    EXPECT_EQ(produced.at(0).text, "migration: partially unplugged device on failure: primary 'hostdev0' not released by the guest within 5000 ms");
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::UnplugRequested);

    // The late release is answered by plugging the primary back (FO-MIG-SRC-05).
    ASSERT_TRUE(m_sut.guest_released("hostdev0", at(9000)).has_value());
    EXPECT_EQ(outputs(), (Lines{"unplugged hostdev0", "plugged hostdev0"}));
}

TEST_F(FailoverSourceMigration_test, FO_MIG_SRC_07_UnplugTimeoutEndsCancellingAsCancelled) {
    start_negotiated(1, with_timeouts(Milliseconds{5000}, std::nullopt));
    migrate_to_wait_unplug(at(100));
    ASSERT_TRUE(m_sut.migrate_cancel(at(200)).has_value());
    (void)m_sut.take_outputs();

    ASSERT_TRUE(m_sut.tick(at(5100)).has_value());

    EXPECT_EQ(outputs(), (Lines{"warning hostdev0 FO-MIG-SRC-07", "MIGRATION cancelled"}));
    EXPECT_EQ(m_sut.migration_state(), MigrationState::Cancelled);
}

TEST_F(FailoverSourceMigration_test, FO_MIG_SRC_07_TimeoutDoesNotFireAfterTheRelease) {
    start_negotiated(1, with_timeouts(Milliseconds{5000}, std::nullopt));
    migrate_to_wait_unplug(at(100));
    ASSERT_TRUE(m_sut.guest_released("hostdev0", at(200)).has_value());
    (void)m_sut.take_outputs();

    ASSERT_TRUE(m_sut.tick(at(10'000)).has_value());

    EXPECT_EQ(outputs(), Lines{});
    EXPECT_EQ(m_sut.migration_state(), MigrationState::Active);
}

// QEMU 10's host: no unplug timeout, but after a cancel in wait-unplug it waits at
// most 30 s for the release, then gives up (cancelled, the guest keeps the primary).
TEST_F(FailoverSourceMigration_test, FO_MIG_SRC_04_07_CancelUnplugTimeoutEndsCancellingAsCancelled) {
    start_negotiated(1, with_timeouts(std::nullopt, Milliseconds{30'000}));
    migrate_to_wait_unplug(at(100));
    ASSERT_TRUE(m_sut.tick(at(600'000)).has_value());  // it runs from the cancel only
    EXPECT_EQ(outputs(), Lines{});
    EXPECT_EQ(m_sut.migration_state(), MigrationState::WaitUnplug);

    ASSERT_TRUE(m_sut.migrate_cancel(at(600'000)).has_value());
    EXPECT_EQ(outputs(), Lines{"MIGRATION cancelling"});
    ASSERT_TRUE(m_sut.tick(at(629'999)).has_value());
    EXPECT_EQ(outputs(), Lines{});
    EXPECT_EQ(m_sut.migration_state(), MigrationState::Cancelling);

    ASSERT_TRUE(m_sut.tick(at(630'000)).has_value());
    const std::vector<Output> produced = m_sut.take_outputs();
    EXPECT_EQ(trace(produced), (Lines{"warning hostdev0 FO-MIG-SRC-07", "MIGRATION cancelled"}));
    EXPECT_EQ(produced.at(0).text,
              "migration: partially unplugged device on failure: primary 'hostdev0' not released by the guest within 30000 ms of the cancel");
    EXPECT_EQ(produced.at(1).rule, "FO-MIG-SRC-07");
    EXPECT_EQ(m_sut.migration_state(), MigrationState::Cancelled);
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::UnplugRequested);
    EXPECT_EQ(m_sut.visible_devices(), (Lines{"net1", "hostdev0"}));
    ASSERT_TRUE(m_sut.tick(at(700'000)).has_value());
    EXPECT_EQ(outputs(), Lines{});

    // The late release is answered by plugging the primary back (FO-MIG-SRC-05).
    ASSERT_TRUE(m_sut.guest_released("hostdev0", at(700'100)).has_value());
    EXPECT_EQ(outputs(), (Lines{"unplugged hostdev0", "plugged hostdev0"}));
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::Plugged);
}

TEST_F(FailoverSourceMigration_test, FO_MIG_SRC_07_CancelUnplugTimeoutWarnsForEveryHeldPrimary) {
    start_negotiated(2, with_timeouts(std::nullopt, Milliseconds{30'000}));
    migrate_to_wait_unplug(at(100));
    ASSERT_TRUE(m_sut.guest_released("hostdev1", at(200)).has_value());
    ASSERT_TRUE(m_sut.migrate_cancel(at(1000)).has_value());
    EXPECT_EQ(outputs(), (Lines{"unplugged hostdev1", "MIGRATION cancelling"}));

    ASSERT_TRUE(m_sut.tick(at(31'000)).has_value());

    EXPECT_EQ(outputs(),
              (Lines{"warning hostdev0 FO-MIG-SRC-07", "MIGRATION cancelled", "plugged hostdev1"}));
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::UnplugRequested);
}

TEST_F(FailoverSourceMigration_test, FO_MIG_SRC_04_07_CancelUnplugTimeoutDoesNotFireAfterTheRelease) {
    start_negotiated(1, with_timeouts(std::nullopt, Milliseconds{30'000}));
    migrate_to_wait_unplug(at(100));
    ASSERT_TRUE(m_sut.migrate_cancel(at(1000)).has_value());
    ASSERT_TRUE(m_sut.guest_released("hostdev0", at(11'000)).has_value());
    EXPECT_EQ(outputs(), (Lines{"MIGRATION cancelling", "unplugged hostdev0", "MIGRATION cancelled",
                                "plugged hostdev0"}));

    ASSERT_TRUE(m_sut.tick(at(60'000)).has_value());
    ASSERT_TRUE(m_sut.migrate(at(60'100)).has_value());  // a new migration: no stale deadline
    ASSERT_TRUE(m_sut.tick(at(120'000)).has_value());

    EXPECT_EQ(outputs(),
              (Lines{"MIGRATION setup", "UNPLUG_PRIMARY hostdev0", "MIGRATION wait-unplug"}));
    EXPECT_EQ(m_sut.migration_state(), MigrationState::WaitUnplug);
}

// A cancel after the release ends at once (FO-MIG-SRC-05): nothing to wait for.
TEST_F(FailoverSourceMigration_test, FO_MIG_SRC_05_07_CancelUnplugTimeoutIsIdleWithoutAWait) {
    start_negotiated(1, with_timeouts(std::nullopt, Milliseconds{0}));
    migrate_to_wait_unplug(at(100));
    ASSERT_TRUE(m_sut.guest_released("hostdev0", at(200)).has_value());
    ASSERT_TRUE(m_sut.migrate_cancel(at(300)).has_value());
    ASSERT_TRUE(m_sut.tick(at(300)).has_value());

    EXPECT_EQ(outputs(), (Lines{"unplugged hostdev0", "MIGRATION active", "MIGRATION cancelling",
                                "MIGRATION cancelled", "plugged hostdev0"}));
}

// Both timeouts: whichever deadline comes first ends the cancelling, and the warning
// states that one.
TEST_F(FailoverSourceMigration_test, FO_MIG_SRC_07_WithBothTimeoutsTheEarlierDeadlineWins) {
    struct Case {
        const char* name;
        long long cancel_at;
        long long fires_at;
        const char* warning;
    };
    // migrate at 100: the unplug timeout (40 s) ends at 40'100; the cancel's (30 s)
    // at cancel_at + 30'000.
    for (const Case& c : {Case{"unplug timeout first", 20'000, 40'100,
                               "migration: partially unplugged device on failure: primary 'hostdev0' not released by the guest within 40000 ms"},
                          Case{"cancel timeout first", 5'000, 35'000,
                               "migration: partially unplugged device on failure: primary 'hostdev0' not released by the guest within 30000 ms "
                               "of the cancel"}}) {
        SCOPED_TRACE(c.name);
        start_negotiated(1, with_timeouts(Milliseconds{40'000}, Milliseconds{30'000}));
        migrate_to_wait_unplug(at(100));
        ASSERT_TRUE(m_sut.migrate_cancel(at(c.cancel_at)).has_value());
        EXPECT_EQ(outputs(), Lines{"MIGRATION cancelling"});

        ASSERT_TRUE(m_sut.tick(at(c.fires_at - 1)).has_value());
        EXPECT_EQ(outputs(), Lines{});
        ASSERT_TRUE(m_sut.tick(at(c.fires_at)).has_value());

        const std::vector<Output> produced = m_sut.take_outputs();
        EXPECT_EQ(trace(produced), (Lines{"warning hostdev0 FO-MIG-SRC-07", "MIGRATION cancelled"}));
        EXPECT_EQ(produced.at(0).text, c.warning);
        EXPECT_EQ(state_of("hostdev0"), PrimaryState::UnplugRequested);
    }
}

}  // namespace
}  // namespace vnetct::reference_impl
