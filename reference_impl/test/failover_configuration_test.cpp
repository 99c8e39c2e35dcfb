// Failover model: configuration rules (FO-CFG-*), at start and on device_add.
#include "failover_model_test_support.hpp"

namespace vnetct::reference_impl {
namespace {

using namespace test_support;

class FailoverConfiguration_test : public FailoverModel_fixture {
  protected:
    // The standby on root1 plus this primary, started, then negotiated.
    void negotiate_with(DeviceSpec primary) {
        start_with({standby_spec("net1", "root1"), std::move(primary)});
        ASSERT_EQ(outputs(), Lines{});
        ASSERT_TRUE(m_sut.guest_ack_features("net1", true, at(10)).has_value());
    }

    std::string text_of_only_output() {
        const std::vector<Output> produced = m_sut.take_outputs();
        EXPECT_EQ(produced.size(), 1U);
        return produced.empty() ? "" : produced.front().text;
    }
};

TEST_F(FailoverConfiguration_test, FO_CFG_01_PrimaryWithoutIdRefusesToStart) {
    start_with({standby_spec("net1", "root1"), primary_spec("", "net1", "root2")});

    EXPECT_EQ(text_of_only_output(), "Device with failover_pair_id needs to have id");
    EXPECT_EQ(m_sut.migrate(at(10)).error().code, ModelErrc::RefusedToStart);
    EXPECT_EQ(m_sut.visible_devices(), Lines{});
}

TEST_F(FailoverConfiguration_test, FO_CFG_01_PrimaryWithoutIdIsRefusedOnDeviceAdd) {
    start_with({standby_spec("net1", "root1")});

    ASSERT_TRUE(m_sut.hot_plug(primary_spec("", "net1", "root2"), at(10)).has_value());

    EXPECT_EQ(outputs(), Lines{"command-error  FO-CFG-01"});
    EXPECT_EQ(m_sut.visible_devices(), Lines{"net1"});
}

TEST_F(FailoverConfiguration_test, FO_CFG_02_PrimaryOnTheRootBusRefusesToStart) {
    DeviceSpec primary = primary_spec("hostdev0", "net1", "pcie.0");
    primary.bus_kind = BusKind::RootBus;
    start_with({standby_spec("net1", "root1"), primary});

    EXPECT_EQ(text_of_only_output(), "Bus 'pcie.0' does not support hotplugging");
    EXPECT_EQ(m_sut.start(at(1)).error().code, ModelErrc::AlreadyStarted);
}

TEST_F(FailoverConfiguration_test, FO_CFG_02_PrimaryHotPluggedOntoTheRootBusIsRefused) {
    start_with({standby_spec("net1", "root1")});
    DeviceSpec primary = primary_spec("hostdev0", "net1", "pcie.0");
    primary.bus_kind = BusKind::RootBus;

    ASSERT_TRUE(m_sut.hot_plug(primary, at(10)).has_value());

    EXPECT_EQ(outputs(), Lines{"command-error hostdev0 FO-CFG-02"});
    EXPECT_EQ(m_sut.primary_state("hostdev0").error().code, ModelErrc::UnknownDevice);
}

// igb on QEMU 10: accepted at start, hidden, refused after the negotiation.
TEST_F(FailoverConfiguration_test, FO_CFG_03_MultifunctionPrimaryIsRefusedAfterNegotiation) {
    DeviceSpec igb = primary_spec("hostdev0", "net1", "root2");
    igb.driver = "igb";
    igb.multifunction = true;
    negotiate_with(igb);

    const std::vector<Output> produced = m_sut.take_outputs();
    EXPECT_EQ(trace(produced), (Lines{"FAILOVER_NEGOTIATED net1", "warning hostdev0 FO-CFG-03"}));
    EXPECT_EQ(produced.at(1).text, "failover: primary device must be in its own PCI slot");
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::Refused);
    EXPECT_EQ(m_sut.visible_devices(), Lines{"net1"});

    // Not retried on the next negotiation; never unplugged on migration.
    ASSERT_TRUE(m_sut.guest_reset(at(20)).has_value());
    ASSERT_TRUE(m_sut.guest_ack_features("net1", true, at(30)).has_value());
    EXPECT_EQ(outputs(), Lines{"FAILOVER_NEGOTIATED net1"});
    ASSERT_TRUE(m_sut.migrate(at(40)).has_value());
    EXPECT_EQ(outputs(), (Lines{"MIGRATION setup", "MIGRATION active"}));
}

TEST_F(FailoverConfiguration_test, FO_CFG_04_PairIdNamingNoStandbyIsVisibleAndTheStandbyWarns) {
    start_with({standby_spec("net1", "root1"), primary_spec("hostdev0", "nosuch", "root2")});
    EXPECT_EQ(m_sut.visible_devices(), (Lines{"net1", "hostdev0"}));

    ASSERT_TRUE(m_sut.guest_ack_features("net1", true, at(10)).has_value());

    const std::vector<Output> produced = m_sut.take_outputs();
    EXPECT_EQ(trace(produced), (Lines{"FAILOVER_NEGOTIATED net1", "warning net1 FO-CFG-04"}));
    EXPECT_EQ(produced.at(1).text, "Primary device not found");
    // An unpaired primary is not the standby's: migration does not unplug it.
    ASSERT_TRUE(m_sut.migrate(at(20)).has_value());
    EXPECT_EQ(outputs(), (Lines{"MIGRATION setup", "MIGRATION active"}));
}

TEST_F(FailoverConfiguration_test, FO_CFG_05_FailoverOffOffersNoStandbyAndHidesNothing) {
    DeviceSpec plain = standby_spec("net1", "root1");
    plain.failover = false;
    start_with({plain, primary_spec("hostdev0", "net1", "root2")});
    EXPECT_EQ(m_sut.visible_devices(), (Lines{"net1", "hostdev0"}));

    EXPECT_EQ(m_sut.guest_ack_features("net1", true, at(10)).error().code,
              ModelErrc::FeatureNotOffered);
    ASSERT_TRUE(m_sut.guest_ack_features("net1", false, at(10)).has_value());
    EXPECT_EQ(outputs(), Lines{});
}

TEST_F(FailoverConfiguration_test, FO_CFG_06_PrimaryBehindConventionalPciIsRefusedAfterNegotiation) {
    DeviceSpec primary = primary_spec("hostdev0", "net1", "pci.1");
    primary.bus_kind = BusKind::ConventionalPci;
    negotiate_with(primary);

    EXPECT_EQ(outputs(), (Lines{"FAILOVER_NEGOTIATED net1", "warning hostdev0 FO-CFG-06"}));
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::Refused);
}

TEST_F(FailoverConfiguration_test, FO_CFG_06_NonNetworkPrimaryIsRefusedAfterNegotiation) {
    DeviceSpec primary = primary_spec("hostdev0", "net1", "root2");
    primary.driver = "nvme";
    primary.network_class = false;
    negotiate_with(primary);

    const std::vector<Output> produced = m_sut.take_outputs();
    EXPECT_EQ(trace(produced), (Lines{"FAILOVER_NEGOTIATED net1", "warning hostdev0 FO-CFG-06"}));
    EXPECT_EQ(produced.at(1).text, "failover primary device is not an Ethernet device");
}

// An unpaired primary is realized at once, so its realize checks end the start.
TEST_F(FailoverConfiguration_test, FO_CFG_06_VisiblePrimaryBehindConventionalPciRefusesToStart) {
    DeviceSpec primary = primary_spec("hostdev0", "nosuch", "pci.1");
    primary.bus_kind = BusKind::ConventionalPci;
    start_with({primary});

    EXPECT_EQ(outputs(), Lines{"start-error hostdev0 FO-CFG-06"});
}

TEST_F(FailoverConfiguration_test, FO_CFG_07_PrimaryInTheStandbysSlotIsRefusedAfterNegotiation) {
    DeviceSpec standby = standby_spec("net1", "root1");
    standby.slot = "0";
    DeviceSpec primary = primary_spec("hostdev0", "net1", "root1");
    primary.slot = "0";
    start_with({standby, primary});
    ASSERT_TRUE(m_sut.guest_ack_features("net1", true, at(10)).has_value());

    const std::vector<Output> produced = m_sut.take_outputs();
    EXPECT_EQ(trace(produced), (Lines{"FAILOVER_NEGOTIATED net1", "warning hostdev0 FO-CFG-07"}));
    EXPECT_EQ(produced.at(1).text,
              "PCI: slot 0 function 0 not available for e1000e, in use by virtio-net-pci");
}

TEST_F(FailoverConfiguration_test, FO_CFG_07_SameBusOtherSlotIsFine) {
    DeviceSpec standby = standby_spec("net1", "pci.1");
    standby.slot = "1";
    DeviceSpec primary = primary_spec("hostdev0", "net1", "pci.1");
    primary.slot = "2";
    negotiate_with(primary);

    EXPECT_EQ(outputs(), (Lines{"FAILOVER_NEGOTIATED net1", "plugged hostdev0"}));
}

// Decision (FO-CFG-08): hiding is decided when the primary is added.
TEST_F(FailoverConfiguration_test, FO_CFG_08_PrimaryHotPluggedBeforeItsStandbyIsVisibleThenPaired) {
    start_with({});

    ASSERT_TRUE(m_sut.hot_plug(primary_spec("hostdev0", "net1", "root2"), at(10)).has_value());
    EXPECT_EQ(outputs(), Lines{"plugged hostdev0"});
    ASSERT_TRUE(m_sut.hot_plug(standby_spec("net1", "root1"), at(20)).has_value());
    EXPECT_EQ(outputs(), Lines{"plugged net1"});
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::Plugged);

    // Paired now: the negotiation neither plugs it again nor warns...
    ASSERT_TRUE(m_sut.guest_ack_features("net1", true, at(30)).has_value());
    EXPECT_EQ(outputs(), Lines{"FAILOVER_NEGOTIATED net1"});
    // ...and migration unplugs it (FO-MIG-SRC-01).
    ASSERT_TRUE(m_sut.migrate(at(40)).has_value());
    EXPECT_EQ(outputs(),
              (Lines{"MIGRATION setup", "UNPLUG_PRIMARY hostdev0", "MIGRATION wait-unplug"}));
}

TEST_F(FailoverConfiguration_test, FO_CFG_08_ColdPlugOrderDecidesHiding) {
    start_with({primary_spec("hostdev0", "net1", "root2"), standby_spec("net1", "root1")});

    EXPECT_EQ(m_sut.visible_devices(), (Lines{"hostdev0", "net1"}));
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::Plugged);
}

TEST_F(FailoverConfiguration_test, FO_CFG_08_PrimaryHotPluggedAfterItsStandbyIsHidden) {
    start_with({standby_spec("net1", "root1")});

    ASSERT_TRUE(m_sut.hot_plug(primary_spec("hostdev0", "net1", "root2"), at(10)).has_value());

    EXPECT_EQ(outputs(), Lines{});
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::Hidden);
}

TEST_F(FailoverConfiguration_test, FO_CFG_08_RemovingTheStandbyUnpairsReaddingPairsAgain) {
    start_with({standby_spec("net1", "root1"), primary_spec("hostdev0", "net1", "root2")});

    ASSERT_TRUE(m_sut.device_del("net1", at(10)).has_value());
    EXPECT_EQ(outputs(), (Lines{"unplugged net1", "DEVICE_DELETED net1"}));
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::Hidden);

    ASSERT_TRUE(m_sut.hot_plug(standby_spec("net1", "root1"), at(20)).has_value());
    ASSERT_TRUE(m_sut.guest_ack_features("net1", true, at(30)).has_value());
    EXPECT_EQ(outputs(), (Lines{"plugged net1", "FAILOVER_NEGOTIATED net1", "plugged hostdev0"}));
}

TEST_F(FailoverConfiguration_test, FO_CFG_09_SecondPrimaryForOneStandbyRefusesToStart) {
    start_with({standby_spec("net1", "root1"), primary_spec("hostdev0", "net1", "root2"),
                primary_spec("hostdev1", "net1", "root3")});

    EXPECT_EQ(text_of_only_output(),
              "Cannot attach more than one primary device to 'net1': 'hostdev0' and 'hostdev1'");
}

TEST_F(FailoverConfiguration_test, FO_CFG_09_SecondPrimaryForOneStandbyIsRefusedOnDeviceAdd) {
    start_negotiated();

    ASSERT_TRUE(m_sut.hot_plug(primary_spec("hostdev9", "net1", "root9"), at(20)).has_value());

    EXPECT_EQ(outputs(), Lines{"command-error hostdev9 FO-CFG-09"});
    EXPECT_EQ(m_sut.visible_devices(), (Lines{"net1", "hostdev0"}));
}

}  // namespace
}  // namespace vnetct::reference_impl
