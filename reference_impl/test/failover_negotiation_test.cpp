// Failover model: negotiation (FO-NEG-*).
#include "failover_model_test_support.hpp"

namespace vnetct::reference_impl {
namespace {

using namespace test_support;

class FailoverNegotiation_test : public FailoverModel_fixture {};

TEST_F(FailoverNegotiation_test, FO_NEG_01_PrimaryHiddenUntilTheGuestAcks) {
    start_with({standby_spec("net1", "root1"), primary_spec("hostdev0", "net1", "root2")});

    EXPECT_EQ(outputs(), Lines{});
    EXPECT_EQ(m_sut.visible_devices(), Lines{"net1"});
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::Hidden);
}

TEST_F(FailoverNegotiation_test, FO_NEG_02_AckEmitsNegotiatedWithStandbyIdAndPlugsPrimary) {
    start_with({standby_spec("net1", "root1"), primary_spec("hostdev0", "net1", "root2")});

    ASSERT_TRUE(m_sut.guest_ack_features("net1", true, at(40)).has_value());

    const std::vector<Output> produced = m_sut.take_outputs();
    EXPECT_EQ(trace(produced), (Lines{"FAILOVER_NEGOTIATED net1", "plugged hostdev0"}));
    EXPECT_EQ(produced.at(0).data, (nlohmann::json{{"device-id", "net1"}}));
    EXPECT_EQ(produced.at(0).rule, "FO-NEG-02");
    EXPECT_EQ(produced.at(0).at, at(40));
    EXPECT_EQ(m_sut.visible_devices(), (Lines{"net1", "hostdev0"}));
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::Plugged);
}

TEST_F(FailoverNegotiation_test, FO_NEG_02_PrimaryHotPluggedAfterTheNegotiationIsPluggedAtOnce) {
    start_with({standby_spec("net1", "root1")});
    ASSERT_TRUE(m_sut.guest_ack_features("net1", true, at(10)).has_value());
    EXPECT_EQ(outputs(), (Lines{"FAILOVER_NEGOTIATED net1", "warning net1 FO-CFG-04"}));

    ASSERT_TRUE(m_sut.hot_plug(primary_spec("hostdev0", "net1", "root2"), at(20)).has_value());

    EXPECT_EQ(outputs(), Lines{"plugged hostdev0"});
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::Plugged);
}

TEST_F(FailoverNegotiation_test, FO_NEG_02_TwoPairsNegotiateIndependently) {
    start_with({standby_spec("net1", "root1"), primary_spec("hostdev0", "net1", "root2"),
                standby_spec("net2", "root3"), primary_spec("hostdev1", "net2", "root4")});

    ASSERT_TRUE(m_sut.guest_ack_features("net2", true, at(10)).has_value());
    EXPECT_EQ(outputs(), (Lines{"FAILOVER_NEGOTIATED net2", "plugged hostdev1"}));
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::Hidden);

    ASSERT_TRUE(m_sut.guest_ack_features("net1", true, at(20)).has_value());
    EXPECT_EQ(outputs(), (Lines{"FAILOVER_NEGOTIATED net1", "plugged hostdev0"}));
}

TEST_F(FailoverNegotiation_test, FO_NEG_03_GuestWithoutStandbyNeverGetsThePrimary) {
    start_with({standby_spec("net1", "root1"), primary_spec("hostdev0", "net1", "root2")});

    ASSERT_TRUE(m_sut.guest_ack_features("net1", false, at(10)).has_value());
    EXPECT_EQ(outputs(), Lines{});
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::Hidden);

    // Nothing to release on migration either: no UNPLUG_PRIMARY, no wait-unplug.
    ASSERT_TRUE(m_sut.migrate(at(20)).has_value());
    EXPECT_EQ(outputs(), (Lines{"MIGRATION setup", "MIGRATION active"}));
}

TEST_F(FailoverNegotiation_test, FO_NEG_04_ResetHidesThePrimaryUntilTheNextAck) {
    start_negotiated();

    ASSERT_TRUE(m_sut.guest_reset(at(100)).has_value());
    EXPECT_EQ(outputs(), Lines{"unplugged hostdev0"});
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::Hidden);
    EXPECT_EQ(m_sut.visible_devices(), Lines{"net1"});

    // The rebooted guest first runs without net_failover: the primary stays hidden.
    ASSERT_TRUE(m_sut.guest_ack_features("net1", false, at(110)).has_value());
    EXPECT_EQ(outputs(), Lines{});

    ASSERT_TRUE(m_sut.guest_reset(at(120)).has_value());
    ASSERT_TRUE(m_sut.guest_ack_features("net1", true, at(130)).has_value());
    EXPECT_EQ(outputs(), (Lines{"FAILOVER_NEGOTIATED net1", "plugged hostdev0"}));
}

TEST_F(FailoverNegotiation_test, FO_NEG_04_ResetBeforeAnyAckChangesNothing) {
    start_with({standby_spec("net1", "root1"), primary_spec("hostdev0", "net1", "root2")});

    ASSERT_TRUE(m_sut.guest_reset(at(10)).has_value());

    EXPECT_EQ(outputs(), Lines{});
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::Hidden);
}

TEST_F(FailoverNegotiation_test, FO_NEG_04_ResetAfterCancelledMigrationHidesThePluggedBackPrimary) {
    start_negotiated();
    ASSERT_TRUE(m_sut.migrate(at(100)).has_value());
    ASSERT_TRUE(m_sut.guest_released("hostdev0", at(200)).has_value());
    ASSERT_TRUE(m_sut.migrate_cancel(at(300)).has_value());
    (void)m_sut.take_outputs();

    ASSERT_TRUE(m_sut.guest_reset(at(400)).has_value());

    EXPECT_EQ(outputs(), Lines{"unplugged hostdev0"});
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::Hidden);
}

}  // namespace
}  // namespace vnetct::reference_impl
