#include "vnetct/host_agent/qmp_client.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "fake_peer.hpp"
#include "vnetct/host_agent/guest_agent_client.hpp"

using namespace vnetct::host_agent;
using namespace std::chrono_literals;
using vnetct::host_agent::testing::FakePeer;

namespace {

const nlohmann::json greeting = nlohmann::json::parse(
    R"({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 9}, "package": ""}, "capabilities": ["oob"]}})");

nlohmann::json event(const std::string& name, const nlohmann::json& data, long long seconds = 1714560000,
                     long long microseconds = 250000) {
    nlohmann::json message{{"event", name}, {"timestamp", {{"seconds", seconds}, {"microseconds", microseconds}}}};
    if (!data.is_null()) {
        message["data"] = data;
    }
    return message;
}

nlohmann::json reply(int id, const nlohmann::json& value = nlohmann::json::object()) {
    return {{"return", value}, {"id", id}};
}

}  // namespace

class QmpClient_test : public ::testing::Test {
  protected:
    void TearDown() override { EXPECT_EQ(m_peer.finish(), std::vector<std::string>{}); }

    // The peer side of greeting + capabilities negotiation (command id 1).
    FakePeer& handshake() {
        return m_peer.send(greeting).expect({{"execute", "qmp_capabilities"}, {"id", 1}}).send(reply(1));
    }

    void connect() {
        auto client = QmpClient::connect(m_peer.socket_path(), transcript_path(), Clock::now() + 5s);
        ASSERT_TRUE(client.has_value()) << client.error().message();
        m_sut.emplace(std::move(*client));
    }

    [[nodiscard]] std::string transcript_path() const { return m_peer.dir() + "/qmp-vm0.jsonl"; }

    FakePeer m_peer;
    std::optional<QmpClient> m_sut;
};

TEST_F(QmpClient_test, HandshakeKeepsTheGreetingAndCommandsMatchTheirReplyById) {
    handshake()
        .expect({{"execute", "query-status"}, {"id", 2}})
        .send(reply(2, {{"status", "running"}, {"running", true}}))
        .expect({{"execute", "stop"}, {"id", 3}})
        .send(reply(3));
    m_peer.start();
    connect();
    EXPECT_EQ(m_sut->greeting()["version"]["qemu"]["major"], 9);

    EXPECT_EQ(m_sut->execute("query-status", nullptr, Clock::now() + 5s).value()["status"], "running");
    EXPECT_EQ(m_sut->execute("stop", nullptr, Clock::now() + 5s).value(), nlohmann::json::object());
    const auto sent = m_peer.finish();
    EXPECT_TRUE(sent.empty());
    // Arguments are omitted when null.
    for (const auto& line : m_peer.received()) {
        EXPECT_FALSE(nlohmann::json::parse(line).contains("arguments")) << line;
    }
}

TEST_F(QmpClient_test, ArgumentsAreSentWithTheCommand) {
    handshake()
        .expect({{"execute", "device_del"}, {"arguments", {{"id", "hostdev0"}}}, {"id", 2}})
        .send(reply(2));
    m_peer.start();
    connect();
    EXPECT_TRUE(m_sut->execute("device_del", {{"id", "hostdev0"}}, Clock::now() + 5s).has_value());
}

TEST_F(QmpClient_test, EventsBeforeTheReplyAreStoredInArrivalOrder) {
    handshake()
        .expect({{"execute", "migrate"}, {"id", 2}})
        .send(event("UNPLUG_PRIMARY", {{"device-id", "hostdev0"}}, 1714560000, 100))
        .send(event("MIGRATION", {{"status", "wait-unplug"}}, 1714560000, 200))
        .send(event("MIGRATION", {{"status", "active"}}, 1714560001, 5))
        .send(reply(2));
    m_peer.start();
    connect();
    ASSERT_TRUE(m_sut->execute("migrate", {{"uri", "tcp:127.0.0.1:4444"}}, Clock::now() + 5s).has_value());

    const auto& events = m_sut->events();
    ASSERT_EQ(events.size(), 3U);
    EXPECT_EQ(events[0].name, "UNPLUG_PRIMARY");
    EXPECT_EQ(events[0].data["device-id"], "hostdev0");
    EXPECT_EQ(events[1].data["status"], "wait-unplug");
    EXPECT_EQ(events[2].data["status"], "active");
    EXPECT_DOUBLE_EQ(events[0].qemu_timestamp, 1714560000.0001);
    EXPECT_DOUBLE_EQ(events[2].qemu_timestamp, 1714560001.000005);
    for (std::size_t i = 0; i < events.size(); ++i) {
        EXPECT_EQ(events[i].index, i);
        EXPECT_GT(events[i].host_ns, 0);
        if (i > 0) {
            // Events sharing one read share its arrival time.
            EXPECT_LE(events[i - 1].host_ns, events[i].host_ns);
        }
    }
}

TEST_F(QmpClient_test, ErrorReplyIsCommandFailedWithClassAndDesc) {
    handshake()
        .expect({{"execute", "device_add"}, {"id", 2}})
        .send({{"error", {{"class", "GenericError"}, {"desc", "Bus 'root.0' does not support hotplugging"}}},
               {"id", 2}});
    m_peer.start();
    connect();
    const auto failed = m_sut->execute("device_add", {{"driver", "virtio-net-pci"}}, Clock::now() + 5s);
    ASSERT_FALSE(failed.has_value());
    EXPECT_EQ(failed.error().code, HostErrc::CommandFailed);
    EXPECT_EQ(failed.error().detail, "device_add: GenericError: Bus 'root.0' does not support hotplugging");
}

TEST_F(QmpClient_test, ReplyWithAnotherIdIsProtocol) {
    handshake().expect({{"execute", "cont"}, {"id", 2}}).send(reply(7));
    m_peer.start();
    connect();
    const auto confused = m_sut->execute("cont", nullptr, Clock::now() + 5s);
    ASSERT_FALSE(confused.has_value());
    EXPECT_EQ(confused.error().code, HostErrc::Protocol);
}

TEST_F(QmpClient_test, GreetingThatIsNotQmpIsProtocol) {
    m_peer.send({{"event", "hello"}, {"version", 1}}).stall().start();
    const auto client = QmpClient::connect(m_peer.socket_path(), "", Clock::now() + 5s);
    ASSERT_FALSE(client.has_value());
    EXPECT_EQ(client.error().code, HostErrc::Protocol);
    EXPECT_NE(client.error().detail.find("hello"), std::string::npos) << client.error().detail;
}

TEST_F(QmpClient_test, CapabilitiesRefusedIsCommandFailed) {
    m_peer.send(greeting)
        .expect({{"execute", "qmp_capabilities"}})
        .send({{"error", {{"class", "CommandNotFound"}, {"desc", "Capabilities negotiation is already complete"}}},
               {"id", 1}})
        .stall()
        .start();
    const auto client = QmpClient::connect(m_peer.socket_path(), "", Clock::now() + 5s);
    ASSERT_FALSE(client.has_value());
    EXPECT_EQ(client.error().code, HostErrc::CommandFailed);
}

TEST_F(QmpClient_test, GarbageLineIsMalformed) {
    handshake().expect({{"execute", "query-status"}}).send_line("Segmentation fault (core dumped)").stall();
    m_peer.start();
    connect();
    const auto garbage = m_sut->execute("query-status", nullptr, Clock::now() + 5s);
    ASSERT_FALSE(garbage.has_value());
    EXPECT_EQ(garbage.error().code, HostErrc::Malformed);
    EXPECT_NE(garbage.error().detail.find("Segmentation fault"), std::string::npos) << garbage.error().detail;
}

TEST_F(QmpClient_test, TruncatedReplyThenHangUpIsClosedWithThePartialText) {
    handshake().expect({{"execute", "query-status"}}).send_raw(R"({"return": {"stat)").close();
    m_peer.start();
    connect();
    const auto truncated = m_sut->execute("query-status", nullptr, Clock::now() + 5s);
    ASSERT_FALSE(truncated.has_value());
    EXPECT_EQ(truncated.error().code, HostErrc::Closed);
    EXPECT_NE(truncated.error().detail.find(R"({"return": {"stat)"), std::string::npos) << truncated.error().detail;
    EXPECT_TRUE(m_sut->closed());
}

TEST_F(QmpClient_test, OversizedLineIsOversized) {
    m_peer.send(greeting)
        .expect({{"execute", "qmp_capabilities"}})
        .send(reply(1, {{"pad", std::string(4096, 'x')}}))
        .stall()
        .start();
    const auto client = QmpClient::connect(m_peer.socket_path(), "", Clock::now() + 5s, 1024);
    ASSERT_FALSE(client.has_value());
    EXPECT_EQ(client.error().code, HostErrc::Oversized);
}

TEST_F(QmpClient_test, SilentPeerTimesOutWithinTheDeadline) {
    handshake().expect({{"execute", "query-status"}}).stall();
    m_peer.start();
    connect();
    const auto start = Clock::now();
    const auto silent = m_sut->execute("query-status", nullptr, start + 200ms);
    const auto elapsed = Clock::now() - start;
    ASSERT_FALSE(silent.has_value());
    EXPECT_EQ(silent.error().code, HostErrc::Timeout);
    EXPECT_NE(silent.error().detail.find("query-status"), std::string::npos) << silent.error().detail;
    EXPECT_GE(elapsed, 200ms);
    EXPECT_LT(elapsed, 1s);
}

TEST_F(QmpClient_test, WaitEventFindsAnAlreadyStoredEvent) {
    handshake()
        .expect({{"execute", "cont"}})
        .send(event("FAILOVER_NEGOTIATED", {{"device-id", "net1"}}))
        .send(reply(2))
        .stall();
    m_peer.start();
    connect();
    ASSERT_TRUE(m_sut->execute("cont", nullptr, Clock::now() + 5s).has_value());
    // Nothing more will come: the event must be found among the stored ones.
    const auto negotiated = m_sut->wait_event("FAILOVER_NEGOTIATED", {{"device-id", "net1"}}, 0, Clock::now() + 1s);
    ASSERT_TRUE(negotiated.has_value()) << negotiated.error().message();
    EXPECT_EQ(negotiated->index, 0U);
    // from_index past it: it no longer counts.
    const auto later = m_sut->wait_event("FAILOVER_NEGOTIATED", nullptr, 1, Clock::now() + 50ms);
    ASSERT_FALSE(later.has_value());
    EXPECT_EQ(later.error().code, HostErrc::Timeout);
}

TEST_F(QmpClient_test, WaitEventReadsUntilAMatchingEventArrives) {
    handshake()
        .send(event("MIGRATION", {{"status", "setup"}}))
        .send(event("MIGRATION", {{"status", "wait-unplug"}}))
        .send(event("MIGRATION", {{"status", "completed"}}))
        .stall();
    m_peer.start();
    connect();
    const auto completed = m_sut->wait_event("MIGRATION", {{"status", "completed"}}, 0, Clock::now() + 5s);
    ASSERT_TRUE(completed.has_value()) << completed.error().message();
    EXPECT_EQ(completed->index, 2U);
}

TEST_F(QmpClient_test, WaitEventTimeoutSaysWhatWasAwaitedForHowLongAndWhatCameInstead) {
    handshake()
        .send(event("STOP", nullptr))
        .send(event("MIGRATION", {{"status", "wait-unplug"}}))
        .send(event("RESUME", nullptr))
        .send(event("RESUME", nullptr))
        .stall();
    m_peer.start();
    connect();
    const auto start = Clock::now();
    const auto missing = m_sut->wait_event("MIGRATION", {{"status", "completed"}}, 0, start + 300ms);
    const auto elapsed = Clock::now() - start;
    ASSERT_FALSE(missing.has_value());
    EXPECT_EQ(missing.error().code, HostErrc::Timeout);
    const std::string& detail = missing.error().detail;
    EXPECT_NE(detail.find(R"(QMP event MIGRATION matching {"status":"completed"} not seen within 300 ms)"),
              std::string::npos)
        << detail;
    EXPECT_NE(detail.find("STOP, MIGRATION{\"status\":\"wait-unplug\"}, RESUME x2"), std::string::npos) << detail;
    EXPECT_LT(elapsed, 1s);
}

TEST_F(QmpClient_test, PumpCollectsEventsUntilTheDeadlineWithoutFailing) {
    handshake().send(event("NIC_RX_FILTER_CHANGED", {{"name", "net1"}})).send(event("RESUME", nullptr)).stall();
    m_peer.start();
    connect();
    const auto start = Clock::now();
    const auto pumped = m_sut->pump(start + 200ms);
    ASSERT_TRUE(pumped.has_value()) << pumped.error().message();
    EXPECT_EQ(*pumped, 2U);
    EXPECT_GE(Clock::now() - start, 200ms);
    EXPECT_EQ(m_sut->pump(Clock::now()).value(), 0U);
}

TEST_F(QmpClient_test, QemuExitingIsClosedAndClosedSaysSo) {
    handshake().send(event("SHUTDOWN", {{"guest", false}, {"reason", "host-qmp-quit"}})).close();
    m_peer.start();
    connect();
    const auto pumped = m_sut->pump(Clock::now() + 5s);
    ASSERT_FALSE(pumped.has_value());
    EXPECT_EQ(pumped.error().code, HostErrc::Closed);
    EXPECT_TRUE(m_sut->closed());
    ASSERT_EQ(m_sut->events().size(), 1U);
    EXPECT_EQ(m_sut->events()[0].name, "SHUTDOWN");
}

TEST_F(QmpClient_test, TranscriptHoldsTheWholeConversation) {
    handshake()
        .expect({{"execute", "query-status"}})
        .send(event("RESUME", nullptr))
        .send(reply(2, {{"status", "running"}}))
        .send_line("garbage")
        .stall();
    m_peer.start();
    connect();
    ASSERT_TRUE(m_sut->execute("query-status", nullptr, Clock::now() + 5s).has_value());
    EXPECT_EQ(m_sut->pump(Clock::now() + 5s).error().code, HostErrc::Malformed);

    std::ifstream file(transcript_path());
    std::vector<nlohmann::json> lines;
    for (std::string line; std::getline(file, line);) {
        lines.push_back(nlohmann::json::parse(line));
    }
    std::vector<std::string> directions;
    for (const auto& line : lines) {
        directions.push_back(line["dir"]);
    }
    EXPECT_EQ(directions, (std::vector<std::string>{"in", "out", "in", "out", "in", "in", "in"}));
    ASSERT_EQ(lines.size(), 7U);
    EXPECT_EQ(lines[0]["msg"], greeting);
    EXPECT_EQ(lines[1]["msg"]["execute"], "qmp_capabilities");
    EXPECT_EQ(lines[4]["msg"]["event"], "RESUME");
    EXPECT_EQ(lines[6]["msg"], (nlohmann::json{{"raw", "garbage"}}));
    EXPECT_EQ(lines[4]["t_host_ns"], m_sut->events()[0].host_ns);
}

// host_ns is when the event arrived, not when the harness got round to reading it.
TEST_F(QmpClient_test, EventsArrivingWhileNobodyReadsKeepTheirArrivalTimes) {
    handshake()
        .send(event("UNPLUG_PRIMARY", {{"device-id", "hostdev0"}}))
        .pause(200ms)
        .send(event("MIGRATION", {{"status", "wait-unplug"}}))
        .pause(400ms)
        .stall();
    m_peer.start();
    connect();
    ASSERT_TRUE(m_peer.wait_until_idle(5s));
    const std::int64_t pump_called_ns = monotonic_now_ns();
    EXPECT_EQ(m_sut->pump(Clock::now() + 100ms).value(), 2U);
    const auto& events = m_sut->events();
    ASSERT_EQ(events.size(), 2U);
    EXPECT_GE(events[1].host_ns - events[0].host_ns, std::chrono::nanoseconds(150ms).count());
    EXPECT_GE(pump_called_ns - events[0].host_ns, std::chrono::nanoseconds(500ms).count());
    EXPECT_LE(events[1].host_ns, pump_called_ns);
}

// The case seen in the field: QEMU emits FAILOVER_NEGOTIATED while the harness
// is blocked in a guest agent request; an agent event arriving later must
// still be later on the one host clock.
TEST_F(QmpClient_test, EventDuringAGuestAgentRequestIsOrderedByArrivalAgainstAgentEvents) {
    handshake()
        .pause(200ms)
        .send(event("FAILOVER_NEGOTIATED", {{"device-id", "net1"}}))
        .expect({{"execute", "query-status"}, {"id", 2}})
        .send(reply(2, {{"status", "running"}}));
    m_peer.start();
    connect();
    FakePeer agent_peer;
    agent_peer.expect({{"cmd", "watch"}})
        .pause(500ms)
        .send({{"event", "netdev-added"}, {"ifname", "eth1"}, {"t_guest_ns", 900}})
        .send({{"id", 1}, {"ok", true}})
        .stall()
        .start();
    auto agent = GuestAgentClient::connect(agent_peer.socket_path(), "", Clock::now() + 5s);
    ASSERT_TRUE(agent.has_value()) << agent.error().message();

    ASSERT_TRUE(agent->request("watch", nullptr, Clock::now() + 5s).has_value());  // blocks ~500 ms
    ASSERT_TRUE(m_sut->execute("query-status", nullptr, Clock::now() + 5s).has_value());

    ASSERT_EQ(m_sut->events().size(), 1U);
    ASSERT_EQ(agent->events().size(), 1U);
    const QmpEvent& negotiated = m_sut->events()[0];
    const AgentEvent& added = agent->events()[0];
    EXPECT_EQ(negotiated.name, "FAILOVER_NEGOTIATED");
    EXPECT_LT(negotiated.host_ns, added.host_ns);
    EXPECT_GE(added.host_ns - negotiated.host_ns, std::chrono::nanoseconds(100ms).count());
    EXPECT_EQ(agent_peer.finish(), std::vector<std::string>{});
}

TEST_F(QmpClient_test, DestroyingWhileQemuIsSilentReturnsAtOnce) {
    handshake().stall();
    m_peer.start();
    connect();
    const auto start = Clock::now();
    m_sut.reset();
    EXPECT_LT(Clock::now() - start, 1s);
}

TEST_F(QmpClient_test, LateReplyToATimedOutCommandIsDroppedNotAProtocolError) {
    handshake()
        .expect({{"execute", "query-status"}, {"id", 2}})
        .pause(400ms)
        .send(reply(2))  // too late: the command gave up after 100 ms
        .expect({{"execute", "cont"}, {"id", 3}})
        .send(reply(3))
        .stall();
    m_peer.start();
    connect();
    const auto slow = m_sut->execute("query-status", nullptr, Clock::now() + 100ms);
    ASSERT_FALSE(slow.has_value());
    EXPECT_EQ(slow.error().code, HostErrc::Timeout);
    const auto next = m_sut->execute("cont", nullptr, Clock::now() + 5s);
    ASSERT_TRUE(next.has_value()) << next.error().message();
}
