// Failover model: inputs it cannot apply are errors as values, and change nothing.
#include "failover_model_test_support.hpp"

namespace vnetct::reference_impl {
namespace {

using namespace test_support;

class FailoverModelErrors_test : public FailoverModel_fixture {};

TEST_F(FailoverModelErrors_test, InputsBeforeStart) {
    EXPECT_EQ(m_sut.migrate(at(0)).error().code, ModelErrc::NotStarted);
    EXPECT_EQ(m_sut.hot_plug(standby_spec("net1", "root1"), at(0)).error().code,
              ModelErrc::NotStarted);
    EXPECT_EQ(m_sut.guest_reset(at(0)).error().code, ModelErrc::NotStarted);
    EXPECT_TRUE(m_sut.tick(at(0)).has_value());
}

TEST_F(FailoverModelErrors_test, ColdPlugAfterStartAndDuplicateIds) {
    ASSERT_TRUE(m_sut.cold_plug(standby_spec("net1", "root1")).has_value());
    EXPECT_EQ(m_sut.cold_plug(standby_spec("net1", "root3")).error().code, ModelErrc::DuplicateId);
    ASSERT_TRUE(m_sut.start(at(0)).has_value());
    EXPECT_EQ(m_sut.cold_plug(standby_spec("net2", "root2")).error().code,
              ModelErrc::AlreadyStarted);
    EXPECT_EQ(m_sut.hot_plug(standby_spec("net1", "root3"), at(1)).error().code,
              ModelErrc::DuplicateId);
}

TEST_F(FailoverModelErrors_test, GuestReleasedForWrongDevices) {
    start_negotiated();
    EXPECT_EQ(m_sut.guest_released("nosuch", at(20)).error().code, ModelErrc::UnknownDevice);
    EXPECT_EQ(m_sut.guest_released("net1", at(20)).error().code, ModelErrc::NotAPrimary);
    const auto not_requested = m_sut.guest_released("hostdev0", at(20));
    EXPECT_EQ(not_requested.error().code, ModelErrc::NotUnplugRequested);
    EXPECT_EQ(not_requested.error().message(),
              "the host did not ask the guest to release this primary: hostdev0 is plugged");
    EXPECT_EQ(m_sut.primary_state("net1").error().code, ModelErrc::NotAPrimary);
    EXPECT_EQ(outputs(), Lines{});
}

TEST_F(FailoverModelErrors_test, MigrationInputsOutOfPlace) {
    start_negotiated();
    EXPECT_EQ(m_sut.migration_failed(at(20)).error().code, ModelErrc::NoMigrationInProgress);
    EXPECT_EQ(m_sut.transfer_done(at(20)).error().code, ModelErrc::TransferNotRunning);
    EXPECT_TRUE(m_sut.migrate_cancel(at(20)).has_value());  // nothing to cancel: no effect
    EXPECT_EQ(outputs(), Lines{});

    ASSERT_TRUE(m_sut.migrate(at(100)).has_value());
    EXPECT_EQ(m_sut.migrate(at(110)).error().code, ModelErrc::MigrationInProgress);
    EXPECT_EQ(m_sut.guest_reset(at(110)).error().code, ModelErrc::MigrationInProgress);
    EXPECT_EQ(m_sut.device_del("hostdev0", at(110)).error().code, ModelErrc::MigrationInProgress);
}

TEST_F(FailoverModelErrors_test, NoGuestAfterCompletion) {
    start_negotiated();
    ASSERT_TRUE(m_sut.migrate(at(100)).has_value());
    ASSERT_TRUE(m_sut.guest_released("hostdev0", at(200)).has_value());
    ASSERT_TRUE(m_sut.transfer_done(at(300)).has_value());
    EXPECT_EQ(m_sut.migrate(at(400)).error().code, ModelErrc::GuestNotRunning);
    EXPECT_EQ(m_sut.guest_ack_features("net1", true, at(400)).error().code,
              ModelErrc::GuestNotRunning);
}

TEST_F(FailoverModelErrors_test, TimeMustNotGoBackwards) {
    start_negotiated();
    ASSERT_TRUE(m_sut.tick(at(500)).has_value());
    const auto backwards = m_sut.migrate(at(499));
    EXPECT_EQ(backwards.error().code, ModelErrc::TimeWentBackwards);
    EXPECT_EQ(backwards.error().message(),
              "now is earlier than a previous input's time: 499 ms after 500 ms");
    EXPECT_EQ(m_sut.migration_state(), MigrationState::None);
    EXPECT_EQ(outputs(), Lines{});
}

TEST_F(FailoverModelErrors_test, DeviceDelOfVisibleAndHiddenDevices) {
    start_with({standby_spec("net1", "root1"), primary_spec("hostdev0", "net1", "root2")});
    ASSERT_TRUE(m_sut.device_del("hostdev0", at(10)).has_value());  // hidden: silently gone
    EXPECT_EQ(outputs(), Lines{});
    EXPECT_EQ(m_sut.device_del("hostdev0", at(20)).error().code, ModelErrc::UnknownDevice);
    ASSERT_TRUE(m_sut.device_del("net1", at(30)).has_value());
    EXPECT_EQ(outputs(), (Lines{"unplugged net1", "DEVICE_DELETED net1"}));
    EXPECT_EQ(m_sut.visible_devices(), Lines{});
}

TEST_F(FailoverModelErrors_test, NamesComeFromOneList) {
    EXPECT_EQ(to_string(MigrationState::WaitUnplug), "wait-unplug");
    EXPECT_EQ(to_string(PrimaryState::UnplugRequested), "unplug-requested");
    EXPECT_EQ(to_string(OutputKind::StartError), "start-error");
    EXPECT_EQ(to_string(ModelErrc::FeatureNotOffered),
              "the device does not offer VIRTIO_NET_F_STANDBY");
}

}  // namespace
}  // namespace vnetct::reference_impl
