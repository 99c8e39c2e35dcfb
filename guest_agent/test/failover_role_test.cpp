#include <gtest/gtest.h>

#include "vnetct/guest_agent/netdev_report.hpp"

namespace vnetct::guest_agent {
namespace {

class FailoverRole_test : public ::testing::Test {
protected:
    static FailoverRole classify(std::optional<std::string> driver, std::optional<std::string> master_driver,
                                 std::optional<std::string> phys_port_name) {
        return classify_failover_role({std::move(driver), std::move(master_driver), std::move(phys_port_name)});
    }
};

TEST_F(FailoverRole_test, NetFailoverDriverIsTheMaster) {
    EXPECT_EQ(classify("net_failover", std::nullopt, std::nullopt), FailoverRole::Master);
}

TEST_F(FailoverRole_test, SlaveNamedSbyIsTheStandby) {
    EXPECT_EQ(classify("virtio_net", "net_failover", "sby"), FailoverRole::Standby);
}

TEST_F(FailoverRole_test, OtherSlaveIsThePrimary) {
    EXPECT_EQ(classify("e1000e", "net_failover", std::nullopt), FailoverRole::Primary);
    EXPECT_EQ(classify("mlx5_core", "net_failover", "p0"), FailoverRole::Primary);
    EXPECT_EQ(classify(std::nullopt, "net_failover", std::nullopt), FailoverRole::Primary);
}

TEST_F(FailoverRole_test, NoFailoverMasterMeansNoRole) {
    EXPECT_EQ(classify("virtio_net", std::nullopt, "sby"), FailoverRole::None);
    EXPECT_EQ(classify("virtio_net", "bonding", "sby"), FailoverRole::None);
    EXPECT_EQ(classify(std::nullopt, std::nullopt, std::nullopt), FailoverRole::None);
}

TEST_F(FailoverRole_test, RoleNames) {
    EXPECT_EQ(to_string(FailoverRole::Master), "master");
    EXPECT_EQ(to_string(FailoverRole::Standby), "standby");
    EXPECT_EQ(to_string(FailoverRole::Primary), "primary");
    EXPECT_EQ(to_string(FailoverRole::None), "none");
}

class VirtioFeatureBits_test : public ::testing::Test {};

TEST_F(VirtioFeatureBits_test, BitZeroIsTheFirstCharacter) {
    const auto bits = parse_virtio_feature_bits("1100000001");
    ASSERT_TRUE(bits.has_value());
    EXPECT_EQ(*bits, (std::vector<int>{0, 1, 9}));
}

TEST_F(VirtioFeatureBits_test, StandbyBit62) {
    std::string features(64, '0');
    features[62] = '1';
    const auto bits = parse_virtio_feature_bits(features);
    ASSERT_TRUE(bits.has_value());
    EXPECT_EQ(*bits, (std::vector<int>{62}));
}

TEST_F(VirtioFeatureBits_test, EmptyAndAllZeroHaveNoBits) {
    EXPECT_EQ(parse_virtio_feature_bits("").value(), std::vector<int>{});
    EXPECT_EQ(parse_virtio_feature_bits("0000").value(), std::vector<int>{});
}

TEST_F(VirtioFeatureBits_test, OtherCharactersAreRejected) {
    const auto bits = parse_virtio_feature_bits("01 1");
    ASSERT_FALSE(bits.has_value());
    EXPECT_EQ(bits.error().code, GuestErrc::InvalidFeatures);
    EXPECT_NE(bits.error().message().find("character 2"), std::string::npos) << bits.error().message();
}

class PciAddress_test : public ::testing::Test {};

TEST_F(PciAddress_test, RecognisesDomainBusDeviceFunction) {
    EXPECT_TRUE(looks_like_pci_address("0000:02:00.0"));
    EXPECT_TRUE(looks_like_pci_address("0000:00:1c.7"));
    EXPECT_FALSE(looks_like_pci_address("pci0000:00"));
    EXPECT_FALSE(looks_like_pci_address("virtio0"));
    EXPECT_FALSE(looks_like_pci_address("0000:02:00.8"));
    EXPECT_FALSE(looks_like_pci_address("0000:0g:00.0"));
}

}  // namespace
}  // namespace vnetct::guest_agent
