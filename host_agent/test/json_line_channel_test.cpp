#include "vnetct/host_agent/json_line_channel.hpp"

#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "fake_peer.hpp"

using namespace vnetct::host_agent;
using namespace std::chrono_literals;
using vnetct::host_agent::testing::FakePeer;
using vnetct::host_agent::testing::read_jsonl;

namespace {


}  // namespace

class JsonLineChannel_test : public ::testing::Test {
  protected:
    void TearDown() override { EXPECT_EQ(m_peer.finish(), std::vector<std::string>{}); }

    void connect(std::size_t max_message_size = default_max_message_size) {
        auto channel = JsonLineChannel::connect(m_peer.socket_path(), Clock::now() + 5s, max_message_size);
        ASSERT_TRUE(channel.has_value()) << channel.error().message();
        m_sut.emplace(std::move(*channel));
    }

    FakePeer m_peer;
    std::optional<JsonLineChannel> m_sut;
};

TEST_F(JsonLineChannel_test, MessagesSplitAcrossWritesAndSharingOneWriteAreReassembled) {
    m_peer.send_raw("{\"a\":").send_raw("1}\n\n{\"b\":2}\r\n{\"c\"").send_raw(":3}\n").start();
    connect();
    EXPECT_EQ(m_sut->receive(Clock::now() + 5s).value(), (nlohmann::json{{"a", 1}}));
    EXPECT_EQ(m_sut->receive(Clock::now() + 5s).value(), (nlohmann::json{{"b", 2}}));
    EXPECT_EQ(m_sut->receive(Clock::now() + 5s).value(), (nlohmann::json{{"c", 3}}));
    EXPECT_GT(m_sut->last_arrival_ns(), 0);
}

TEST_F(JsonLineChannel_test, SentMessageArrivesAsOneLine) {
    m_peer.expect({{"execute", "stop"}}).start();
    connect();
    ASSERT_TRUE(m_sut->send({{"execute", "stop"}}).has_value());
}

TEST_F(JsonLineChannel_test, GarbageLineIsMalformedAndTheNextLineStillReads) {
    m_peer.send_line("this is not json").send({{"ok", true}}).start();
    connect();
    const auto garbage = m_sut->receive(Clock::now() + 5s);
    ASSERT_FALSE(garbage.has_value());
    EXPECT_EQ(garbage.error().code, HostErrc::Malformed);
    EXPECT_NE(garbage.error().detail.find("this is not json"), std::string::npos) << garbage.error().detail;
    EXPECT_EQ(m_sut->receive(Clock::now() + 5s).value(), (nlohmann::json{{"ok", true}}));
}

TEST_F(JsonLineChannel_test, HangUpMidLineIsClosedWithThePartialText) {
    m_peer.send_raw("{\"return\": {\"status\": \"runn").close().start();
    connect();
    const auto truncated = m_sut->receive(Clock::now() + 5s);
    ASSERT_FALSE(truncated.has_value());
    EXPECT_EQ(truncated.error().code, HostErrc::Closed);
    EXPECT_NE(truncated.error().detail.find("{\"return\": {\"status\": \"runn"), std::string::npos)
        << truncated.error().detail;
    EXPECT_TRUE(m_sut->closed());
    EXPECT_EQ(m_sut->receive(Clock::now() + 1s).error().code, HostErrc::Closed);
}

TEST_F(JsonLineChannel_test, HangUpBetweenMessagesIsClosed) {
    m_peer.send({{"a", 1}}).close().start();
    connect();
    EXPECT_TRUE(m_sut->receive(Clock::now() + 5s).has_value());
    const auto end = m_sut->receive(Clock::now() + 5s);
    ASSERT_FALSE(end.has_value());
    EXPECT_EQ(end.error().code, HostErrc::Closed);
    EXPECT_TRUE(m_sut->closed());
}

TEST_F(JsonLineChannel_test, LineOverTheLimitIsOversizedWithOrWithoutItsLineEnd) {
    const std::string big = "{\"pad\":\"" + std::string(200, 'x') + "\"}";
    m_peer.send_line(big).stall().start();
    connect(64);
    const auto oversized = m_sut->receive(Clock::now() + 5s);
    ASSERT_FALSE(oversized.has_value());
    EXPECT_EQ(oversized.error().code, HostErrc::Oversized);
    // Framing is lost: the channel stays failed.
    EXPECT_EQ(m_sut->receive(Clock::now() + 1s).error().code, HostErrc::Oversized);
}

TEST_F(JsonLineChannel_test, EndlessLineIsOversizedBeforeItEnds) {
    m_peer.send_raw(std::string(1000, 'x')).stall().start();
    connect(100);
    const auto oversized = m_sut->receive(Clock::now() + 5s);
    ASSERT_FALSE(oversized.has_value());
    EXPECT_EQ(oversized.error().code, HostErrc::Oversized);
}

TEST_F(JsonLineChannel_test, SilentPeerTimesOutAtTheDeadline) {
    m_peer.stall().start();
    connect();
    const auto start = Clock::now();
    const auto nothing = m_sut->receive(start + 200ms);
    const auto elapsed = Clock::now() - start;
    ASSERT_FALSE(nothing.has_value());
    EXPECT_EQ(nothing.error().code, HostErrc::Timeout);
    EXPECT_GE(elapsed, 200ms);
    EXPECT_LT(elapsed, 1s);
}

TEST_F(JsonLineChannel_test, ConnectRetriesUntilTheSocketAppears) {
    m_peer.send({{"hello", 1}}).start(300ms);
    const auto start = Clock::now();
    connect();
    EXPECT_GE(Clock::now() - start, 300ms);
    EXPECT_EQ(m_sut->receive(Clock::now() + 5s).value(), (nlohmann::json{{"hello", 1}}));
}

TEST_F(JsonLineChannel_test, SocketNobodyListensOnTimesOutWithTheLastError) {
    m_peer.start();  // empty script: the peer only has to be there for TearDown
    const std::string path = m_peer.dir() + "/unlistened.sock";
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address), 0);
    const auto start = Clock::now();
    const auto refused = JsonLineChannel::connect(path, start + 200ms);
    const auto elapsed = Clock::now() - start;
    ::close(fd);
    ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error().code, HostErrc::Timeout);
    EXPECT_NE(refused.error().detail.find("refused"), std::string::npos) << refused.error().detail;
    EXPECT_GE(elapsed, 200ms);
    EXPECT_LT(elapsed, 1s);
}

TEST_F(JsonLineChannel_test, TranscriptKeepsEveryLineAsJsonAndGarbageAsRaw) {
    m_peer.expect({{"execute", "cont"}}).send({{"return", nlohmann::json::object()}}).send_line("not json").start();
    connect();
    const std::string path = m_peer.dir() + "/qmp-vm0.jsonl";
    auto transcript = Transcript::open(path);
    ASSERT_TRUE(transcript.has_value()) << transcript.error().message();
    m_sut->set_transcript(std::move(*transcript));

    ASSERT_TRUE(m_sut->send({{"execute", "cont"}}).has_value());
    ASSERT_TRUE(m_sut->receive(Clock::now() + 5s).has_value());
    EXPECT_EQ(m_sut->receive(Clock::now() + 5s).error().code, HostErrc::Malformed);
    m_sut->note("done");

    const auto lines = read_jsonl(path);
    ASSERT_EQ(lines.size(), 4U);
    EXPECT_EQ(lines[0]["dir"], "out");
    EXPECT_EQ(lines[0]["msg"], (nlohmann::json{{"execute", "cont"}}));
    EXPECT_EQ(lines[1]["dir"], "in");
    EXPECT_EQ(lines[1]["msg"], (nlohmann::json{{"return", nlohmann::json::object()}}));
    EXPECT_EQ(lines[2]["dir"], "in");
    EXPECT_EQ(lines[2]["msg"], (nlohmann::json{{"raw", "not json"}}));
    EXPECT_EQ(lines[3]["dir"], "note");
    for (const auto& line : lines) {
        EXPECT_TRUE(line["t_host_ns"].is_number_integer()) << line;
        const std::string wall = line["t_wall"];
        // 2024-05-01T12:34:56.123456Z
        EXPECT_EQ(wall.size(), 27U) << wall;
        EXPECT_EQ(wall[10], 'T') << wall;
        EXPECT_EQ(wall.back(), 'Z') << wall;
    }
    EXPECT_LE(lines[0]["t_host_ns"].get<std::int64_t>(), lines[1]["t_host_ns"].get<std::int64_t>());
}

// Arrival times are taken when the bytes arrive, not when the caller reads.
TEST_F(JsonLineChannel_test, MessagesAreStampedOnArrivalWhileNobodyReceives) {
    m_peer.send({{"first", 1}}).pause(200ms).send({{"second", 2}}).pause(400ms).stall().start();
    connect();
    // No receive() meanwhile: the peer sends, waits 200 ms, sends, waits 400 ms.
    ASSERT_TRUE(m_peer.wait_until_idle(5s));
    const std::int64_t receive_called_ns = monotonic_now_ns();
    ASSERT_EQ(m_sut->receive(Clock::now() + 5s).value(), (nlohmann::json{{"first", 1}}));
    const std::int64_t first_ns = m_sut->last_arrival_ns();
    ASSERT_EQ(m_sut->receive(Clock::now() + 5s).value(), (nlohmann::json{{"second", 2}}));
    const std::int64_t second_ns = m_sut->last_arrival_ns();
    EXPECT_GE(second_ns - first_ns, std::chrono::nanoseconds(150ms).count());
    EXPECT_GE(receive_called_ns - first_ns, std::chrono::nanoseconds(500ms).count());
    EXPECT_LE(second_ns, receive_called_ns);
}

TEST_F(JsonLineChannel_test, TranscriptKeepsEachLineOnceWithItsArrivalTime) {
    const std::string path = m_peer.dir() + "/agent-vm0.jsonl";
    m_peer.send({{"early", 1}}).pause(100ms).send({{"late", 2}}).stall().start();
    connect();
    auto transcript = Transcript::open(path);
    ASSERT_TRUE(transcript.has_value()) << transcript.error().message();
    // "early" may already have arrived: a transcript set now still gets it, once.
    m_sut->set_transcript(std::move(*transcript));
    ASSERT_TRUE(m_peer.wait_until_idle(5s));
    ASSERT_TRUE(m_sut->receive(Clock::now() + 5s).has_value());
    const std::int64_t early_ns = m_sut->last_arrival_ns();
    ASSERT_TRUE(m_sut->receive(Clock::now() + 5s).has_value());
    const std::int64_t late_ns = m_sut->last_arrival_ns();

    const auto lines = read_jsonl(path);
    ASSERT_EQ(lines.size(), 2U);
    EXPECT_EQ(lines[0]["msg"], (nlohmann::json{{"early", 1}}));
    EXPECT_EQ(lines[0]["t_host_ns"], early_ns);
    EXPECT_EQ(lines[1]["msg"], (nlohmann::json{{"late", 2}}));
    EXPECT_EQ(lines[1]["t_host_ns"], late_ns);
    EXPECT_GE(late_ns - early_ns, std::chrono::nanoseconds(80ms).count());
}

TEST_F(JsonLineChannel_test, DestroyingWhileThePeerIsSilentReturnsAtOnce) {
    m_peer.stall().start();
    connect();
    const auto start = Clock::now();
    m_sut.reset();
    EXPECT_LT(Clock::now() - start, 1s);
}

TEST_F(JsonLineChannel_test, MovingKeepsTheReaderAndItsQueue) {
    m_peer.send({{"a", 1}}).pause(100ms).send({{"b", 2}}).stall().start();
    connect();
    JsonLineChannel moved = std::move(*m_sut);
    m_sut.reset();  // the moved-from shell goes; the reader stays with `moved`
    EXPECT_EQ(moved.receive(Clock::now() + 5s).value(), (nlohmann::json{{"a", 1}}));
    EXPECT_EQ(moved.receive(Clock::now() + 5s).value(), (nlohmann::json{{"b", 2}}));

    FakePeer other;
    other.send({{"c", 3}}).stall().start();
    auto replacement = JsonLineChannel::connect(other.socket_path(), Clock::now() + 5s);
    ASSERT_TRUE(replacement.has_value()) << replacement.error().message();
    const auto start = Clock::now();
    moved = std::move(*replacement);  // stops and joins the reader of the first connection
    EXPECT_LT(Clock::now() - start, 1s);
    EXPECT_EQ(moved.receive(Clock::now() + 5s).value(), (nlohmann::json{{"c", 3}}));
    EXPECT_EQ(replacement->receive(Clock::now()).error().code, HostErrc::Closed);
    EXPECT_EQ(other.finish(), std::vector<std::string>{});
}

TEST(Transcript_test, EmptyPathKeepsNoTranscript) {
    auto transcript = Transcript::open("");
    ASSERT_TRUE(transcript.has_value());
    EXPECT_FALSE(transcript->enabled());
    transcript->note("dropped");
}

TEST(Transcript_test, UnwritablePathIsIo) {
    const auto transcript = Transcript::open("/nonexistent-dir/qmp-vm0.jsonl");
    ASSERT_FALSE(transcript.has_value());
    EXPECT_EQ(transcript.error().code, HostErrc::Io);
}

TEST(EventLog_test, EmptyNameFindsAnyEventFromTheIndexOn) {
    struct Event {
        std::string name;
        nlohmann::json data;
        std::size_t index = 0;
    };
    EventLog<Event> log;
    ASSERT_TRUE(log.append({"netdev-changed", {{"name", "eth0"}}}, "test"));
    ASSERT_TRUE(log.append({"netdev-added", {{"name", "eth2"}}}, "test"));
    ASSERT_NE(log.find("", nullptr, 0), nullptr);
    EXPECT_EQ(log.find("", nullptr, 1)->name, "netdev-added");
    EXPECT_EQ(log.find("", nullptr, 2), nullptr);
    EXPECT_EQ(log.find("netdev-removed", nullptr, 0), nullptr);
    EXPECT_EQ(log.find("", {{"name", "eth0"}}, 0)->index, 0U);
}

TEST(JsonMatches_test, EveryKeyOfTheMatchMustBeEqual) {
    const nlohmann::json data{{"device", "net1"}, {"path", "/machine/peripheral/net1"}};
    EXPECT_TRUE(json_matches(data, nullptr));
    EXPECT_TRUE(json_matches(data, {{"device", "net1"}}));
    EXPECT_FALSE(json_matches(data, {{"device", "net0"}}));
    EXPECT_FALSE(json_matches(data, {{"missing", 1}}));
    EXPECT_FALSE(json_matches(nullptr, {{"device", "net1"}}));
}
