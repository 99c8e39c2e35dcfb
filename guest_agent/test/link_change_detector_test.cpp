#include <linux/if.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include "vnetct/guest_agent/link_changes.hpp"
#include "vnetct/guest_agent/rtnetlink.hpp"

namespace vnetct::guest_agent {
namespace {

constexpr const char* kMac = "52:54:00:6f:55:cc";

LinkState link(int ifindex, std::string name, int master, std::string operstate, std::string mac = kMac) {
    return LinkState{ifindex, std::move(name), master, std::move(operstate), std::move(mac)};
}

class LinkChangeDetector_test : public ::testing::Test {
protected:
    void SetUp() override {
        m_sut.seed(link(1, "lo", 0, "unknown", "00:00:00:00:00:00"));
        m_sut.seed(link(2, "eth0", 0, "up"));
        m_sut.seed(link(3, "eth1", 2, "up"));
    }

    LinkChangeDetector m_sut{[](int ifindex) -> std::optional<std::string> {
        return ifindex == 99 ? std::optional<std::string>("bond99") : std::nullopt;
    }};
};

TEST_F(LinkChangeDetector_test, SeededLinksProduceNoEventWhenUnchanged) {
    EXPECT_FALSE(m_sut.on_new_link(link(3, "eth1", 2, "up")).has_value());
}

TEST_F(LinkChangeDetector_test, EventNamesOnTheAgentChannel) {
    EXPECT_EQ(to_string(LinkEventKind::Added), "netdev-added");
    EXPECT_EQ(to_string(LinkEventKind::Removed), "netdev-removed");
    EXPECT_EQ(to_string(LinkEventKind::Changed), "netdev-changed");
}

TEST_F(LinkChangeDetector_test, NewIfindexIsAdded) {
    const auto event = m_sut.on_new_link(link(4, "eth2", 0, "down"));
    ASSERT_TRUE(event.has_value());
    EXPECT_EQ(event->kind, LinkEventKind::Added);
    EXPECT_EQ(event->state.name, "eth2");
    EXPECT_FALSE(event->master_name.has_value());
    EXPECT_TRUE(event->changes.empty());
}

TEST_F(LinkChangeDetector_test, PrimaryEnslavedChangesMasterWithItsName) {
    ASSERT_TRUE(m_sut.on_new_link(link(4, "eth2", 0, "down")).has_value());
    const auto event = m_sut.on_new_link(link(4, "eth2", 2, "up"));
    ASSERT_TRUE(event.has_value());
    EXPECT_EQ(event->kind, LinkEventKind::Changed);
    EXPECT_EQ(event->changes, (std::vector<std::string>{"master", "operstate"}));
    EXPECT_EQ(event->master_name, "eth0");
}

TEST_F(LinkChangeDetector_test, ReleasedFromMaster) {
    const auto event = m_sut.on_new_link(link(3, "eth1", 0, "up"));
    ASSERT_TRUE(event.has_value());
    EXPECT_EQ(event->changes, (std::vector<std::string>{"master"}));
    EXPECT_FALSE(event->master_name.has_value());
}

TEST_F(LinkChangeDetector_test, RenameAndMacChange) {
    const auto event = m_sut.on_new_link(link(2, "ens3", 0, "up", "52:54:00:00:00:01"));
    ASSERT_TRUE(event.has_value());
    EXPECT_EQ(event->changes, (std::vector<std::string>{"name", "mac"}));
    EXPECT_EQ(m_sut.links().at(2).name, "ens3");
}

TEST_F(LinkChangeDetector_test, UnknownMasterIsResolvedByTheFallback) {
    const auto event = m_sut.on_new_link(link(3, "eth1", 99, "up"));
    ASSERT_TRUE(event.has_value());
    EXPECT_EQ(event->master_name, "bond99");
}

TEST_F(LinkChangeDetector_test, RemovedLinkNamesItsLastMasterAndIsForgotten) {
    const auto event = m_sut.on_del_link(link(3, "eth1", 2, "down"));
    ASSERT_TRUE(event.has_value());
    EXPECT_EQ(event->kind, LinkEventKind::Removed);
    EXPECT_EQ(event->master_name, "eth0");
    EXPECT_FALSE(m_sut.links().contains(3));
    const auto again = m_sut.on_new_link(link(3, "eth1", 0, "down"));
    ASSERT_TRUE(again.has_value());
    EXPECT_EQ(again->kind, LinkEventKind::Added);
}

TEST_F(LinkChangeDetector_test, ResyncReportsDifferencesAndVanishedLinks) {
    const auto events = m_sut.resync({link(1, "lo", 0, "unknown", "00:00:00:00:00:00"), link(2, "eth0", 0, "down"),
                                      link(5, "eth3", 2, "up")});
    ASSERT_EQ(events.size(), 3U);
    EXPECT_EQ(events[0].kind, LinkEventKind::Changed);
    EXPECT_EQ(events[0].state.ifindex, 2);
    EXPECT_EQ(events[1].kind, LinkEventKind::Added);
    EXPECT_EQ(events[1].state.ifindex, 5);
    EXPECT_EQ(events[2].kind, LinkEventKind::Removed);
    EXPECT_EQ(events[2].state.ifindex, 3);
}

TEST_F(LinkChangeDetector_test, EventJsonCarriesTimestampsAndChanges) {
    const auto event = m_sut.on_new_link(link(3, "eth1", 0, "lowerlayerdown"));
    ASSERT_TRUE(event.has_value());
    const auto json = link_event_to_json(*event, 123, 456);
    EXPECT_EQ(json.at("event"), "netdev-changed");
    EXPECT_EQ(json.at("t_guest_ns"), 123);
    EXPECT_EQ(json.at("t_guest_realtime_ns"), 456);
    EXPECT_EQ(json.at("ifindex"), 3);
    EXPECT_EQ(json.at("name"), "eth1");
    EXPECT_TRUE(json.at("master").is_null());
    EXPECT_EQ(json.at("operstate"), "lowerlayerdown");
    EXPECT_EQ(json.at("mac"), kMac);
    EXPECT_EQ(json.at("changes"), (std::vector<std::string>{"master", "operstate"}));
}

TEST_F(LinkChangeDetector_test, OperstateNamesMatchSysfs) {
    EXPECT_EQ(operstate_name(IF_OPER_UP), "up");
    EXPECT_EQ(operstate_name(IF_OPER_DOWN), "down");
    EXPECT_EQ(operstate_name(IF_OPER_LOWERLAYERDOWN), "lowerlayerdown");
    EXPECT_EQ(operstate_name(200), "unknown");
}

class NetlinkParsing_test : public ::testing::Test {};

TEST_F(NetlinkParsing_test, RoundTripsALinkMessage) {
    const LinkState state = link(4, "eth2", 2, "up");
    const auto bytes = encode_link_message(RTM_NEWLINK, state, IF_OPER_UP, 7);
    const auto messages = parse_netlink_messages(bytes);
    ASSERT_EQ(messages.size(), 1U);
    EXPECT_EQ(messages[0].type, LinkMessage::Type::NewLink);
    EXPECT_EQ(messages[0].sequence, 7U);
    ASSERT_TRUE(messages[0].state.has_value());
    EXPECT_EQ(*messages[0].state, state);
}

TEST_F(NetlinkParsing_test, SeveralMessagesInOneDatagramAndTruncatedTail) {
    auto bytes = encode_link_message(RTM_NEWLINK, link(4, "eth2", 0, "down"), IF_OPER_DOWN);
    const auto removal = encode_link_message(RTM_DELLINK, link(3, "eth1", 2, "down"), IF_OPER_DOWN);
    bytes.insert(bytes.end(), removal.begin(), removal.end());
    bytes.insert(bytes.end(), removal.begin(), removal.begin() + 10);
    const auto messages = parse_netlink_messages(bytes);
    ASSERT_EQ(messages.size(), 2U);
    EXPECT_EQ(messages[0].type, LinkMessage::Type::NewLink);
    EXPECT_EQ(messages[1].type, LinkMessage::Type::DelLink);
    EXPECT_EQ(messages[1].state->master_ifindex, 2);
}

TEST_F(NetlinkParsing_test, BridgePortMessagesAreNotLinkChanges) {
    // `ip link set X nomaster` on a bridge port sends RTM_DELLINK of family AF_BRIDGE.
    const auto bytes = encode_link_message(RTM_DELLINK, link(3, "eth1", 4, "down"), IF_OPER_DOWN, 0, AF_BRIDGE);
    const auto messages = parse_netlink_messages(bytes);
    ASSERT_EQ(messages.size(), 1U);
    EXPECT_EQ(messages[0].type, LinkMessage::Type::Other);
}

class Ipv4Prefix_test : public ::testing::Test {};

TEST_F(Ipv4Prefix_test, ParsesAddressAndLength) {
    const auto prefix = parse_ipv4_prefix("198.18.0.2/24");
    ASSERT_TRUE(prefix.has_value());
    EXPECT_EQ(prefix->address, (std::array<std::uint8_t, 4>{198, 18, 0, 2}));
    EXPECT_EQ(prefix->prefix_length, 24);
}

TEST_F(Ipv4Prefix_test, RejectsMalformedText) {
    for (const char* text : {"198.18.0.2", "198.18.0/24", "198.18.0.2/33", "198.18.0.2/", "198.18.0.2/2x",
                             "::1/64", "eth0"}) {
        const auto prefix = parse_ipv4_prefix(text);
        EXPECT_FALSE(prefix.has_value()) << text;
        if (!prefix) {
            EXPECT_EQ(prefix.error().code, GuestErrc::BadArgument);
        }
    }
}

}  // namespace
}  // namespace vnetct::guest_agent
