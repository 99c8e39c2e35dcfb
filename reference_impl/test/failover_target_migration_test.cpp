// Failover model: the migration target (FO-MIG-TGT-*), and source + target
// together against the traces QEMU 10.0.2 produced under the harness.
#include "failover_model_test_support.hpp"

namespace vnetct::reference_impl {
namespace {

using namespace test_support;

class FailoverTargetMigration_test : public FailoverModel_fixture {
  protected:
    void start_target(int pairs = 1, ModelOptions options = {}) {
        std::vector<DeviceSpec> specs{standby_spec("net1", "root1"),
                                      primary_spec("hostdev0", "net1", "root2")};
        if (pairs == 2) {
            specs.push_back(standby_spec("net2", "root3"));
            specs.push_back(primary_spec("hostdev1", "net2", "root4"));
        }
        start_with(specs, Role::Target, std::move(options));
    }

    ModelResult<void> load(std::vector<std::string> standbys, Milliseconds now) {
        return m_sut.incoming_loaded(standbys, now);
    }
};

TEST_F(FailoverTargetMigration_test, FO_MIG_TGT_01_PrimaryHiddenUntilTheStateIsLoaded) {
    start_target();
    EXPECT_EQ(outputs(), Lines{});
    EXPECT_EQ(m_sut.guest_ack_features("net1", true, at(5)).error().code,
              ModelErrc::GuestNotRunning);

    ASSERT_TRUE(m_sut.incoming(at(10)).has_value());

    EXPECT_EQ(outputs(), (Lines{"MIGRATION setup", "MIGRATION active"}));
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::Hidden);
    EXPECT_EQ(m_sut.visible_devices(), Lines{"net1"});
}

TEST_F(FailoverTargetMigration_test, FO_MIG_TGT_02_LoadedStateNegotiatesPlugsThenResumes) {
    start_target();
    ASSERT_TRUE(m_sut.incoming(at(10)).has_value());
    (void)m_sut.take_outputs();

    ASSERT_TRUE(load({"net1"}, at(900)).has_value());

    EXPECT_EQ(outputs(), (Lines{"FAILOVER_NEGOTIATED net1", "plugged hostdev0", "RESUME",
                                "MIGRATION completed"}));
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::Plugged);
    EXPECT_TRUE(m_sut.guest_running());
}

TEST_F(FailoverTargetMigration_test, FO_MIG_TGT_02_StandbyNotNegotiatedKeepsItsPrimaryHidden) {
    start_target(2);
    ASSERT_TRUE(m_sut.incoming(at(10)).has_value());
    (void)m_sut.take_outputs();

    ASSERT_TRUE(load({"net2"}, at(900)).has_value());

    EXPECT_EQ(outputs(), (Lines{"FAILOVER_NEGOTIATED net2", "plugged hostdev1", "RESUME",
                                "MIGRATION completed"}));
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::Hidden);
}

TEST_F(FailoverTargetMigration_test, FO_MIG_TGT_01_FailedIncomingLeavesPrimariesHidden) {
    start_target();
    ASSERT_TRUE(m_sut.incoming(at(10)).has_value());
    (void)m_sut.take_outputs();

    ASSERT_TRUE(m_sut.migration_failed(at(20)).has_value());

    EXPECT_EQ(outputs(), Lines{"MIGRATION failed"});
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::Hidden);
    EXPECT_EQ(load({"net1"}, at(30)).error().code, ModelErrc::NoMigrationInProgress);
}

TEST_F(FailoverTargetMigration_test, FO_MIG_TGT_02_BadLoadedStateIsAnErrorAndChangesNothing) {
    start_target();
    ASSERT_TRUE(m_sut.incoming(at(10)).has_value());
    (void)m_sut.take_outputs();

    EXPECT_EQ(load({"net1", "nosuch"}, at(20)).error().code, ModelErrc::UnknownDevice);
    EXPECT_EQ(load({"hostdev0"}, at(20)).error().code, ModelErrc::FeatureNotOffered);
    EXPECT_EQ(outputs(), Lines{});
    EXPECT_EQ(m_sut.migration_state(), MigrationState::Active);
}

TEST_F(FailoverTargetMigration_test, FO_MIG_SRC_01_FO_MIG_TGT_02_BothSidesMatchQemu10Traces) {
    start_target();
    FailoverHost source{Role::Source};
    ASSERT_TRUE(source.cold_plug(standby_spec("net1", "root1")).has_value());
    ASSERT_TRUE(source.cold_plug(primary_spec("hostdev0", "net1", "root2")).has_value());
    ASSERT_TRUE(source.start(at(0)).has_value());
    ASSERT_TRUE(source.guest_ack_features("net1", true, at(5000)).has_value());
    (void)source.take_outputs();

    ASSERT_TRUE(source.migrate(at(10'000)).has_value());
    ASSERT_TRUE(m_sut.incoming(at(10'010)).has_value());
    ASSERT_TRUE(source.guest_released("hostdev0", at(10'250)).has_value());
    ASSERT_TRUE(source.transfer_done(at(11'000)).has_value());
    ASSERT_TRUE(load({"net1"}, at(11'010)).has_value());

    EXPECT_EQ(trace(source.take_outputs()),
              (Lines{"MIGRATION setup", "UNPLUG_PRIMARY hostdev0", "MIGRATION wait-unplug",
                     "unplugged hostdev0", "MIGRATION active", "STOP", "MIGRATION device",
                     "MIGRATION completed"}));
    EXPECT_EQ(outputs(), (Lines{"MIGRATION setup", "MIGRATION active", "FAILOVER_NEGOTIATED net1",
                                "plugged hostdev0", "RESUME", "MIGRATION completed"}));
}

TEST_F(FailoverTargetMigration_test, SourceOnlyAndTargetOnlyInputsAreRoleErrors) {
    start_target();
    EXPECT_EQ(m_sut.migrate(at(1)).error().code, ModelErrc::WrongRole);
    EXPECT_EQ(m_sut.migrate_cancel(at(1)).error().code, ModelErrc::WrongRole);
    EXPECT_EQ(m_sut.transfer_done(at(1)).error().code, ModelErrc::WrongRole);

    start_negotiated();
    EXPECT_EQ(m_sut.incoming(at(20)).error().code, ModelErrc::WrongRole);
    EXPECT_EQ(load({"net1"}, at(20)).error().code, ModelErrc::WrongRole);
}

}  // namespace
}  // namespace vnetct::reference_impl
