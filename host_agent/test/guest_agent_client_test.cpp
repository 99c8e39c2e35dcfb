#include "vnetct/host_agent/guest_agent_client.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "fake_peer.hpp"

using namespace vnetct::host_agent;
using namespace std::chrono_literals;
using vnetct::host_agent::testing::FakePeer;

namespace {

const nlohmann::json hello{{"event", "hello"}, {"version", 1}, {"kernel", "6.12.0"}, {"t_guest_ns", 812345678}};

}  // namespace

class GuestAgentClient_test : public ::testing::Test {
  protected:
    void TearDown() override { EXPECT_EQ(m_peer.finish(), std::vector<std::string>{}); }

    void connect() {
        auto client = GuestAgentClient::connect(m_peer.socket_path(), transcript_path(), Clock::now() + 5s);
        ASSERT_TRUE(client.has_value()) << client.error().message();
        m_sut.emplace(std::move(*client));
    }

    [[nodiscard]] std::string transcript_path() const { return m_peer.dir() + "/agent-vm0.jsonl"; }

    FakePeer m_peer;
    std::optional<GuestAgentClient> m_sut;
};

TEST_F(GuestAgentClient_test, ConnectDoesNotWaitForTheHello) {
    m_peer.stall().start();
    const auto start = Clock::now();
    connect();
    EXPECT_LT(Clock::now() - start, 1s);
    const auto silent = m_sut->wait_hello(Clock::now() + 100ms);
    ASSERT_FALSE(silent.has_value());
    EXPECT_EQ(silent.error().code, HostErrc::Timeout);
}

TEST_F(GuestAgentClient_test, WaitHelloReturnsTheHelloAndKeepsItAsAnEvent) {
    m_peer.send(hello).stall().start();
    connect();
    const auto greeted = m_sut->wait_hello(Clock::now() + 5s);
    ASSERT_TRUE(greeted.has_value()) << greeted.error().message();
    EXPECT_EQ((*greeted)["kernel"], "6.12.0");
    ASSERT_EQ(m_sut->events().size(), 1U);
    EXPECT_EQ(m_sut->events()[0].name, "hello");
    // A second call answers from the stored hello.
    EXPECT_EQ(m_sut->wait_hello(Clock::now()).value(), hello);
}

TEST_F(GuestAgentClient_test, RequestMergesArgumentsAndReturnsTheResult) {
    m_peer.send(hello)
        .expect({{"id", 1}, {"cmd", "link-state"}, {"ifname", "eth0"}})
        .send({{"id", 1}, {"ok", true}, {"result", {{"operstate", "up"}, {"master", "failover0"}}}})
        .expect({{"id", 2}, {"cmd", "ping"}})
        .send({{"id", 2}, {"ok", true}});
    m_peer.start();
    connect();
    const auto state = m_sut->request("link-state", {{"ifname", "eth0"}}, Clock::now() + 5s);
    ASSERT_TRUE(state.has_value()) << state.error().message();
    EXPECT_EQ((*state)["master"], "failover0");
    const auto pong = m_sut->request("ping", nullptr, Clock::now() + 5s);
    ASSERT_TRUE(pong.has_value()) << pong.error().message();
    EXPECT_TRUE(pong->is_null());
    // The hello read before the first reply is stored, not lost.
    ASSERT_EQ(m_sut->events().size(), 1U);
}

TEST_F(GuestAgentClient_test, NotOkIsCommandFailedWithTheAgentsErrorText) {
    m_peer.expect({{"cmd", "link-state"}})
        .send({{"id", 1}, {"ok", false}, {"error", "no such interface: eth9"}});
    m_peer.start();
    connect();
    const auto failed = m_sut->request("link-state", {{"ifname", "eth9"}}, Clock::now() + 5s);
    ASSERT_FALSE(failed.has_value());
    EXPECT_EQ(failed.error().code, HostErrc::CommandFailed);
    EXPECT_EQ(failed.error().detail, "link-state: no such interface: eth9");
}

TEST_F(GuestAgentClient_test, ArgumentsThatAreNotAnObjectOrClashWithTheEnvelopeAreRefused) {
    m_peer.start();
    connect();
    EXPECT_EQ(m_sut->request("ping", nlohmann::json::array({1}), Clock::now() + 1s).error().code,
              HostErrc::InvalidArgument);
    EXPECT_EQ(m_sut->request("ping", {{"id", 9}}, Clock::now() + 1s).error().code, HostErrc::InvalidArgument);
}

TEST_F(GuestAgentClient_test, ReplyWithAnotherIdIsProtocol) {
    m_peer.expect({{"cmd", "ping"}}).send({{"id", 5}, {"ok", true}}).stall();
    m_peer.start();
    connect();
    EXPECT_EQ(m_sut->request("ping", nullptr, Clock::now() + 5s).error().code, HostErrc::Protocol);
}

TEST_F(GuestAgentClient_test, EventsDuringARequestAreStoredAndAwaitable) {
    m_peer.send(hello)
        .expect({{"cmd", "watch"}})
        .send({{"event", "netdev-added"}, {"ifname", "eth1"}, {"t_guest_ns", 900}})
        .send({{"id", 1}, {"ok", true}, {"result", nlohmann::json::object()}})
        .send({{"event", "enslaved"}, {"ifname", "eth1"}, {"master", "eth0"}, {"t_guest_ns", 950}})
        .stall();
    m_peer.start();
    connect();
    ASSERT_TRUE(m_sut->request("watch", nullptr, Clock::now() + 5s).has_value());
    const auto added = m_sut->wait_event("netdev-added", {{"ifname", "eth1"}}, 0, Clock::now() + 1s);
    ASSERT_TRUE(added.has_value()) << added.error().message();
    EXPECT_EQ(added->index, 1U);
    EXPECT_EQ(added->data["t_guest_ns"], 900);
    const auto enslaved = m_sut->wait_event("enslaved", {{"master", "eth0"}}, added->index, Clock::now() + 5s);
    ASSERT_TRUE(enslaved.has_value()) << enslaved.error().message();
    EXPECT_GE(enslaved->host_ns, added->host_ns);
}

TEST_F(GuestAgentClient_test, WaitEventTimeoutListsTheEventsSeen) {
    m_peer.send(hello).send({{"event", "netdev-added"}, {"ifname", "eth1"}}).stall().start();
    connect();
    const auto missing = m_sut->wait_event("netdev-removed", nullptr, 0, Clock::now() + 200ms);
    ASSERT_FALSE(missing.has_value());
    EXPECT_EQ(missing.error().code, HostErrc::Timeout);
    EXPECT_NE(missing.error().detail.find("guest agent event netdev-removed not seen within 200 ms"),
              std::string::npos)
        << missing.error().detail;
    EXPECT_NE(missing.error().detail.find("hello, netdev-added"), std::string::npos) << missing.error().detail;
}

TEST_F(GuestAgentClient_test, PumpCollectsEventsAndTheTranscriptKeepsThem) {
    m_peer.send(hello).send({{"event", "carrier"}, {"ifname", "eth0"}, {"up", true}}).stall().start();
    connect();
    EXPECT_EQ(m_sut->pump(Clock::now() + 200ms).value(), 2U);
    m_sut->note("pumped");

    std::ifstream file(transcript_path());
    std::vector<nlohmann::json> lines;
    for (std::string line; std::getline(file, line);) {
        lines.push_back(nlohmann::json::parse(line));
    }
    ASSERT_EQ(lines.size(), 3U);
    EXPECT_EQ(lines[0]["dir"], "in");
    EXPECT_EQ(lines[0]["msg"], hello);
    EXPECT_EQ(lines[1]["msg"]["event"], "carrier");
    EXPECT_EQ(lines[2]["dir"], "note");
    EXPECT_EQ(lines[2]["msg"]["note"], "pumped");
}

TEST_F(GuestAgentClient_test, MessageThatIsNeitherEventNorReplyIsProtocol) {
    m_peer.send({{"status", "confused"}}).stall().start();
    connect();
    EXPECT_EQ(m_sut->pump(Clock::now() + 1s).error().code, HostErrc::Protocol);
}
