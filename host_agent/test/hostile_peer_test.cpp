// A peer that attacks the line-JSON clients (issue 17, "parsers under attack"):
// lines nested far too deep, and floods past every bound the harness keeps.
// Each must end in a typed error (Malformed, Flooded) and never in a crash.
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "fake_peer.hpp"
#include "vnetct/host_agent/guest_agent_client.hpp"
#include "vnetct/host_agent/json_line_channel.hpp"
#include "vnetct/host_agent/qmp_client.hpp"

using namespace vnetct::host_agent;
using namespace std::chrono_literals;
using vnetct::host_agent::testing::FakePeer;
using vnetct::host_agent::testing::read_jsonl;

namespace {

// {"event":"<name>","data":[[[...]]]}: `depth` arrays inside the object, as in
// the issue's report (200 000 levels killed pytest with SIGSEGV).
std::string deeply_nested_event(const std::string& name, std::size_t depth) {
    return "{\"event\":\"" + name + "\",\"data\":" + std::string(depth, '[') + std::string(depth, ']') + "}";
}

constexpr std::size_t attack_depth = 200'000;

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }


const nlohmann::json greeting = nlohmann::json::parse(
    R"({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 9}, "package": ""}, "capabilities": []}})");

}  // namespace

TEST(NestsDeeperThan_test, CountsBracketsOutsideStringsOnly) {
    EXPECT_FALSE(nests_deeper_than(R"({"a":[1,{"b":[]}]})", 4));
    EXPECT_TRUE(nests_deeper_than(R"({"a":[1,{"b":[]}]})", 3));
    EXPECT_FALSE(nests_deeper_than(R"({"a":"[[[[[[[[[[\"[[[["})", 1));
    EXPECT_FALSE(nests_deeper_than("[]" + std::string(1000, ' ') + "[[]]", 2));
    EXPECT_TRUE(nests_deeper_than(std::string(attack_depth, '['), max_json_depth));
    EXPECT_FALSE(nests_deeper_than(std::string(max_json_depth, '[') + std::string(max_json_depth, ']'),
                                   max_json_depth));
}

class HostilePeer_test : public ::testing::Test {
  protected:
    // A flooding peer is cut off (its send fails once the client is gone):
    // only the tests whose peer must not be cut off look at its problems.
    void TearDown() override { (void)m_peer.finish(); }

    [[nodiscard]] std::string transcript_path() const { return m_peer.dir() + "/transcript.jsonl"; }

    // An agent client pumping what a peer sends as `flood`: the error that
    // ended the pump (none: a Protocol error saying so) and the events kept.
    std::pair<vnetct::Error<HostErrc>, std::size_t> pump_flood(const std::string& flood) {
        m_peer.send_raw(flood).stall().start();
        auto client = GuestAgentClient::connect(m_peer.socket_path(), "", Clock::now() + 5s);
        if (!client) {
            return {client.error(), 0};
        }
        const auto pumped = client->pump(Clock::now() + 30s);
        if (pumped) {
            return {{HostErrc::Protocol, "the flood ended in no error"}, client->events().size()};
        }
        return {pumped.error(), client->events().size()};
    }

    FakePeer m_peer;
};

TEST_F(HostilePeer_test, QmpEventNested200000DeepIsMalformedAndTheNextEventStillArrives) {
    m_peer.send(greeting)
        .expect({{"execute", "qmp_capabilities"}, {"id", 1}})
        .send({{"return", nlohmann::json::object()}, {"id", 1}})
        .send_line(deeply_nested_event("DEEP", attack_depth))
        .send({{"event", "STOP"}, {"timestamp", {{"seconds", 1}, {"microseconds", 0}}}})
        .stall()
        .start();
    auto client = QmpClient::connect(m_peer.socket_path(), transcript_path(), Clock::now() + 5s);
    ASSERT_TRUE(client.has_value()) << client.error().message();

    const auto deep = client->wait_event("STOP", nullptr, 0, Clock::now() + 5s);
    ASSERT_FALSE(deep.has_value());
    EXPECT_EQ(deep.error().code, HostErrc::Malformed);
    EXPECT_TRUE(contains(deep.error().detail, "nested deeper than 64 levels")) << deep.error().detail.substr(0, 400);

    const auto stop = client->wait_event("STOP", nullptr, 0, Clock::now() + 5s);
    ASSERT_TRUE(stop.has_value()) << stop.error().message();
    EXPECT_EQ(client->events().size(), 1U);
    // The transcript keeps the rejected line as raw text, then the good event.
    const auto lines = read_jsonl(transcript_path());
    ASSERT_GE(lines.size(), 2U);
    EXPECT_EQ(lines[lines.size() - 2]["msg"]["raw"].get<std::string>().size(), deeply_nested_event("DEEP", attack_depth).size());
    EXPECT_EQ(lines.back()["msg"]["event"], "STOP");
    EXPECT_EQ(m_peer.finish(), std::vector<std::string>{});
}

TEST_F(HostilePeer_test, AgentEventNested200000DeepIsMalformedAndTheNextEventStillArrives) {
    m_peer.send_line(deeply_nested_event("hello", attack_depth))
        .send({{"event", "hello"}, {"version", 1}})
        .stall()
        .start();
    auto client = GuestAgentClient::connect(m_peer.socket_path(), transcript_path(), Clock::now() + 5s);
    ASSERT_TRUE(client.has_value()) << client.error().message();

    const auto deep = client->wait_hello(Clock::now() + 5s);
    ASSERT_FALSE(deep.has_value());
    EXPECT_EQ(deep.error().code, HostErrc::Malformed);
    EXPECT_TRUE(contains(deep.error().detail, "nested deeper than 64 levels")) << deep.error().detail.substr(0, 400);

    const auto hello = client->wait_hello(Clock::now() + 5s);
    ASSERT_TRUE(hello.has_value()) << hello.error().message();
    EXPECT_EQ((*hello)["version"], 1);
    EXPECT_EQ(m_peer.finish(), std::vector<std::string>{});
}

TEST_F(HostilePeer_test, MoreUnreadLinesThanTheQueueKeepsIsFloodedAfterThoseQueued) {
    // One write of a few bytes arrives in one read: the reader queues all it
    // may before anyone receives. The bound is 3 here (16384 by default).
    m_peer.send_raw("1\n2\n3\n4\n5\n").stall().start();
    auto channel = JsonLineChannel::connect(m_peer.socket_path(), Clock::now() + 5s, default_max_message_size, 3);
    ASSERT_TRUE(channel.has_value()) << channel.error().message();
    EXPECT_EQ(channel->receive(Clock::now() + 5s).value(), 1);
    EXPECT_EQ(channel->receive(Clock::now() + 5s).value(), 2);
    EXPECT_EQ(channel->receive(Clock::now() + 5s).value(), 3);
    const auto flooded = channel->receive(Clock::now() + 5s);
    ASSERT_FALSE(flooded.has_value());
    EXPECT_EQ(flooded.error().code, HostErrc::Flooded);
    EXPECT_TRUE(contains(flooded.error().detail, "sent more than 3 lines or 33554432 bytes that were not received "
                                                 "(3 lines, 3 bytes waiting)"))
        << flooded.error().detail;
    // The reader has stopped: the channel stays Flooded.
    EXPECT_EQ(channel->receive(Clock::now()).error().code, HostErrc::Flooded);
}

TEST_F(HostilePeer_test, UnreadBytesOverTwiceTheMessageLimitAreFlooded) {
    const std::string line = "\"" + std::string(88, 'x') + "\"\n";  // 90 bytes with its line end
    m_peer.send_raw(line + line + line).stall().start();
    auto channel = JsonLineChannel::connect(m_peer.socket_path(), Clock::now() + 5s, 100);
    ASSERT_TRUE(channel.has_value()) << channel.error().message();
    EXPECT_TRUE(channel->receive(Clock::now() + 5s).has_value());
    EXPECT_TRUE(channel->receive(Clock::now() + 5s).has_value());
    const auto third = channel->receive(Clock::now() + 5s);
    ASSERT_FALSE(third.has_value());
    EXPECT_EQ(third.error().code, HostErrc::Flooded);
    EXPECT_TRUE(contains(third.error().detail, "200 bytes")) << third.error().detail;
}

TEST_F(HostilePeer_test, AgentFloodingEventsEndsInFloodedNamingTheAgent) {
    // Whichever bound the flood meets first (the queue when the reader outruns
    // the client, else the event list), the client says Flooded.
    std::string flood;
    for (std::size_t i = 0; i <= max_stored_events; ++i) {
        flood += "{\"event\":\"spam\"}\n";
    }
    const auto [error, kept] = pump_flood(flood);
    EXPECT_EQ(error.code, HostErrc::Flooded);
    EXPECT_TRUE(contains(error.detail, m_peer.socket_path())) << error.detail;
    EXPECT_LE(kept, max_stored_events);
}

struct LoggedEvent {
    std::string name;
    nlohmann::json data;
    std::size_t index = 0;
};

TEST(EventLogBound_test, EventsPastTheBoundAreFloodedAndDropped) {
    EventLog<LoggedEvent> log;
    for (std::size_t i = 0; i < max_stored_events; ++i) {
        ASSERT_TRUE(log.append({"spam", nullptr}, "the peer"));
    }
    const auto more = log.append({"one-too-many", nullptr}, "the peer");
    ASSERT_FALSE(more.has_value());
    EXPECT_EQ(more.error().code, HostErrc::Flooded);
    EXPECT_EQ(more.error().detail, "the peer sent more than 100000 events (the last: one-too-many); later events are dropped");
    EXPECT_EQ(log.events().size(), max_stored_events);
}

TEST(EventLogBound_test, EventBytesPastTheBoundAreFloodedAndDropped) {
    EventLog<LoggedEvent> log;
    constexpr std::size_t line = 1024 * 1024;
    for (std::size_t i = 0; i < max_stored_event_bytes / line; ++i) {
        ASSERT_TRUE(log.append({"big", nullptr}, "the peer", line));
    }
    EXPECT_EQ(log.bytes(), max_stored_event_bytes);
    const auto more = log.append({"one-byte-too-many", nullptr}, "the peer", 1);
    ASSERT_FALSE(more.has_value());
    EXPECT_EQ(more.error().code, HostErrc::Flooded);
    EXPECT_EQ(more.error().detail, "the peer sent more than 16777216 bytes of events in 17 events (the last: "
                                   "one-byte-too-many, 1 bytes); later events are dropped");
    EXPECT_EQ(log.events().size(), max_stored_event_bytes / line);
}

TEST_F(HostilePeer_test, AgentFloodingBigEventsEndsInFloodedWithinTheByteBound) {
    // 40 events of 1 MiB: under the count bound, past the byte bound at the 17th.
    const std::string line = "{\"event\":\"big\",\"pad\":\"" + std::string(1024 * 1024 - 28, 'x') + "\"}\n";
    std::string flood;
    for (int i = 0; i < 40; ++i) {
        flood += line;
    }
    const auto [error, kept] = pump_flood(flood);
    EXPECT_EQ(error.code, HostErrc::Flooded);
    EXPECT_TRUE(contains(error.detail, "bytes of events")) << error.detail;
    EXPECT_EQ(kept, 16U);
}

TEST(TranscriptBound_test, LinesPastTheBoundAreReplacedByOneFloodedNote) {
    FakePeer folder;  // for its temporary folder only
    const std::string path = folder.dir() + "/bounded.jsonl";
    auto transcript = Transcript::open(path, 1000);
    ASSERT_TRUE(transcript.has_value()) << transcript.error().message();
    for (int i = 0; i < 100; ++i) {
        transcript->record(TranscriptDirection::In, {{"event", "spam"}, {"n", i}});
    }
    const auto lines = read_jsonl(path);
    ASSERT_GE(lines.size(), 2U);
    std::size_t bytes = 0;
    for (std::size_t i = 0; i + 1 < lines.size(); ++i) {
        bytes += lines[i].dump().size() + 1;
    }
    EXPECT_LE(bytes, 1000U);
    EXPECT_GT(bytes, 800U);
    const std::string note = lines.back()["msg"]["note"];
    EXPECT_TRUE(contains(note, "Flooded: the transcript reached its bound of 1000 bytes")) << note;
    EXPECT_EQ(transcript->dropped_lines(), 100 - (lines.size() - 1));
}
