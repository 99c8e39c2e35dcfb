// failover-group-id: the encoding round trip, the pairing decision, and the
// capability walker on malformed images (loops, bad pointers, truncation,
// random bytes), which must end with an answer or an error, never a hang.
#include <gtest/gtest.h>

#include <random>

#include "vnetct/groupid/groupid.hpp"

using namespace vnetct::groupid;

namespace {
constexpr std::uint64_t kGroup = 0x1122334455667788ULL;
}

TEST(GroupId_test, FO_GRP_01_NicAndBridgeRoundTrip) {
    const auto nic = encode_nic_config(kGroup);
    ASSERT_EQ(nic.size(), 256u);
    auto id = nic_group_id(nic);
    ASSERT_TRUE(id.has_value()) << id.error().message();
    EXPECT_EQ(id->value(), kGroup);
    const auto bridge = encode_bridge_config(kGroup);
    auto bridge_id = bridge_group_id(bridge);
    ASSERT_TRUE(bridge_id.has_value()) << bridge_id.error().message();
    EXPECT_EQ(bridge_id->value(), kGroup);
    // Little-endian on the wire: the lowest byte first.
    auto caps = walk_capabilities(nic);
    ASSERT_TRUE(caps.has_value());
    const auto ours = std::find_if(caps->begin(), caps->end(), [&](const Capability& c) {
        return c.id == cap_id_vendor && nic[c.offset + 3] == virtio_pci_cap_group_id_cfg;
    });
    ASSERT_NE(ours, caps->end());
    EXPECT_EQ(nic[ours->offset + 2], 24);
    EXPECT_EQ(nic[ours->offset + 16], 0x88);
    EXPECT_EQ(nic[ours->offset + 23], 0x11);
}

TEST(GroupId_test, WithoutAGroupIdThereIsNone) {
    EXPECT_EQ(nic_group_id(encode_nic_config(std::nullopt)).value(), std::nullopt);
    EXPECT_EQ(bridge_group_id(encode_bridge_config(std::nullopt)).value(), std::nullopt);
    // The NIC's group id is not the bridge's and the other way round.
    EXPECT_EQ(bridge_group_id(encode_nic_config(kGroup)).value(), std::nullopt);
    EXPECT_EQ(nic_group_id(encode_bridge_config(kGroup)).value(), std::nullopt);
    auto no_list = encode_nic_config(std::nullopt);
    no_list[0x06] = 0;
    EXPECT_EQ(nic_group_id(no_list).value(), std::nullopt);
    EXPECT_EQ(walk_capabilities(no_list).error().code, GroupIdErrc::NoCapabilityList);
}

TEST(GroupId_test, PairingDecisionTable) {
    const std::string mac = "52:54:00:6f:55:cc", other = "52:54:00:00:00:01";
    auto same_group_other_mac = decide_pairing(mac, kGroup, other, kGroup);
    EXPECT_TRUE(same_group_other_mac.paired);  // FO-GRP-02
    EXPECT_EQ(same_group_other_mac.by, "group-id");
    EXPECT_FALSE(decide_pairing(mac, kGroup, mac, kGroup + 1).paired);  // FO-GRP-02: same MAC is not enough
    EXPECT_EQ(decide_pairing(mac, std::nullopt, mac, std::nullopt).by, "mac");  // FO-GRP-03
    EXPECT_FALSE(decide_pairing(mac, std::nullopt, other, std::nullopt).paired);
    EXPECT_FALSE(decide_pairing(mac, kGroup, mac, std::nullopt).paired);  // FO-GRP-04
    EXPECT_FALSE(decide_pairing(mac, std::nullopt, mac, kGroup).paired);
    EXPECT_NE(decide_pairing(mac, std::nullopt, mac, kGroup).why.find("only the primary"), std::string::npos);
}

TEST(GroupId_test, FO_GRP_05_SelfLoopAndLongerLoop) {
    auto config = encode_nic_config(kGroup);
    config[0x41] = 0x40;  // the first capability points at itself
    auto walked = walk_capabilities(config);
    ASSERT_FALSE(walked.has_value());
    EXPECT_EQ(walked.error().code, GroupIdErrc::Loop);
    config = encode_nic_config(std::nullopt);
    auto caps = walk_capabilities(config).value();
    config[caps.back().offset + 1] = caps.front().offset;  // the last points back to the first
    EXPECT_EQ(walk_capabilities(config).error().code, GroupIdErrc::Loop);
    EXPECT_EQ(nic_group_id(config).error().code, GroupIdErrc::Loop);
}

TEST(GroupId_test, FO_GRP_05_PointersIntoTheHeaderOrPastTheEnd) {
    auto config = encode_nic_config(kGroup);
    config[0x34] = 0x20;
    auto walked = walk_capabilities(config);
    ASSERT_FALSE(walked.has_value());
    EXPECT_EQ(walked.error().code, GroupIdErrc::BadPointer);
    EXPECT_NE(walked.error().detail.find("the pointer at 0x34 is 0x20"), std::string::npos) << walked.error().detail;
    const std::vector<std::uint8_t> short_image(config.begin(), config.begin() + 0x80);
    config = encode_nic_config(kGroup);
    std::vector<std::uint8_t> cut(config.begin(), config.begin() + 0x80);
    cut[0x41] = 0xfc;  // past this 128-byte image
    EXPECT_EQ(walk_capabilities(cut).error().code, GroupIdErrc::BadPointer);
}

TEST(GroupId_test, FO_GRP_05_ReservedPointerBitsAreMasked) {
    auto config = encode_nic_config(kGroup);
    config[0x34] |= 0x03;
    EXPECT_EQ(nic_group_id(config).value(), kGroup);
}

TEST(GroupId_test, FO_GRP_05_ShortCapabilityLengthIsMalformed) {
    auto config = encode_nic_config(kGroup);
    const auto nic_caps = walk_capabilities(config).value();
    for (const auto& cap : nic_caps) {
        if (cap.id == cap_id_vendor && config[cap.offset + 3] == virtio_pci_cap_group_id_cfg) {
            config[cap.offset + 2] = 16;
        }
    }
    EXPECT_EQ(nic_group_id(config).error().code, GroupIdErrc::BadCapability);
    auto bridge = encode_bridge_config(kGroup);
    const auto bridge_caps = walk_capabilities(bridge).value();
    for (const auto& cap : bridge_caps) {
        if (cap.id == cap_id_vendor) {
            bridge[cap.offset + 2] = 8;
        }
    }
    EXPECT_EQ(bridge_group_id(bridge).error().code, GroupIdErrc::BadCapability);
}

TEST(GroupId_test, FO_GRP_05_EveryTruncationIsAnAnswerOrAnError) {
    for (const auto& full : {encode_nic_config(kGroup), encode_bridge_config(kGroup)}) {
        const bool nic = full[0] == 0xf4;
        for (std::size_t length = 0; length < full.size(); ++length) {
            const std::span<const std::uint8_t> cut(full.data(), length);
            auto id = nic ? nic_group_id(cut) : bridge_group_id(cut);
            if (id.has_value()) {
                // Only an image that still holds the whole capability can give the id.
                EXPECT_TRUE(!id->has_value() || id->value() == kGroup) << "length " << length;
            } else {
                EXPECT_FALSE(id.error().detail.empty());
            }
        }
    }
    EXPECT_EQ(walk_capabilities(std::span<const std::uint8_t>()).error().code, GroupIdErrc::Truncated);
}

TEST(GroupId_test, FO_GRP_05_RandomImagesNeverHangOrCrash) {
    std::mt19937 random(20261122);
    std::size_t answers = 0, errors = 0;
    for (int round = 0; round < 20000; ++round) {
        std::vector<std::uint8_t> config(round % 3 == 0 ? 256 : 64 + random() % 192);
        for (auto& byte : config) {
            byte = static_cast<std::uint8_t>(random());
        }
        if (round % 2 == 0 && config.size() > 0x40) {  // mostly well-formed headers, random lists
            config[0x06] |= 0x10;
            config[0x34] = static_cast<std::uint8_t>(0x40 + random() % (config.size() - 0x40));
        }
        auto nic = nic_group_id(config);
        auto bridge = bridge_group_id(config);
        (nic ? answers : errors)++;
        (bridge ? answers : errors)++;
        auto caps = walk_capabilities(config);
        if (caps) {
            ASSERT_LE(caps->size(), max_capabilities);
        }
    }
    EXPECT_GT(answers, 0u);
    EXPECT_GT(errors, 0u);
}

TEST(GroupId_test, FO_GRP_05_GroupCapabilityWithABarOffsetOrLengthIsMalformed) {
    for (const std::size_t field : {4u, 8u, 12u}) {  // bar, offset, length
        auto config = encode_nic_config(kGroup);
        const auto caps = walk_capabilities(config).value();
        for (const auto& cap : caps) {
            if (cap.id == cap_id_vendor && config[cap.offset + 3] == virtio_pci_cap_group_id_cfg) {
                config[cap.offset + field] = 1;
            }
        }
        auto id = nic_group_id(config);
        ASSERT_FALSE(id.has_value()) << "field " << field;
        EXPECT_EQ(id.error().code, GroupIdErrc::BadCapability);
    }
}
