// LT-DATA-01, LT-DATA-02, LT-XFER-02, LT-XFER-04 with traffic: a paced,
// sequence-numbered UDP stream (host_agent's UdpStream) from the TAP's host
// side to a GuestNic reading the queues, handed off mid-stream from a source
// GuestNic to a target one. Sequence numbers are the judge; the TAP's counters
// are a second witness.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <linux/if_tun.h>
#include <sys/socket.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "netns_fixture.hpp"
#include "vnetct/host_agent/stream_analysis.hpp"
#include "vnetct/host_agent/topology.hpp"
#include "vnetct/host_agent/udp_stream.hpp"
#include "vnetct/livetap/channel.hpp"
#include "vnetct/livetap/guest_nic.hpp"
#include "vnetct/livetap/tap_state.hpp"

using namespace vnetct::livetap;
using namespace std::chrono_literals;
using vnetct::livetap::test_support::TestNetns;
namespace host = vnetct::host_agent;

namespace {

constexpr double kRatePps = 10000;
constexpr std::int64_t kPackets = 6000;  // 0.6 s at 10k pps
constexpr std::uint64_t kHandOffAfter = 2000;

struct TapCounters {
    std::uint64_t tx_packets = 0;  // frames the TAP queued for its reader
    std::uint64_t tx_dropped = 0;
    std::uint64_t carrier_changes = 0;
    int ifindex = 0;
};

class HandoffTraffic_test : public ::testing::TestWithParam<int> {
  protected:
    void SetUp() override {
        ASSERT_TRUE(m_netns.created());
        TapSpec spec;
        spec.netns = m_netns.name();
        spec.name = "lt0";
        spec.queues = GetParam();
        spec.vnet_hdr_size = 12;
        spec.offloads = TUN_F_CSUM;
        auto opened = open_tap(spec);
        ASSERT_TRUE(opened.has_value()) << opened.error().message();
        m_source_queues = std::move(opened->queues);
        m_state = opened->state;
        bool ok = false;
        const std::string output = m_netns.ip({"addr", "add", "198.18.0.1/24", "dev", "lt0"}, &ok);
        ASSERT_TRUE(ok) << output;
        m_netns.ip({"link", "set", "lt0", "up"}, &ok);
        ASSERT_TRUE(ok);
    }

    TapCounters counters() const {
        bool ok = false;
        const std::string text = m_netns.ip({"-j", "-s", "-s", "link", "show", "dev", "lt0"}, &ok);
        EXPECT_TRUE(ok) << text;
        TapCounters counters;
        if (!ok) {
            return counters;
        }
        const auto link = nlohmann::json::parse(text).at(0);
        counters.ifindex = link.at("ifindex").get<int>();
        counters.tx_packets = link.at("stats64").at("tx").at("packets").get<std::uint64_t>();
        counters.tx_dropped = link.at("stats64").at("tx").at("dropped").get<std::uint64_t>();
        counters.carrier_changes = link.at("stats64").at("tx").value("carrier_changes", std::uint64_t{0});
        return counters;
    }

    host::UdpStream start_stream() {
        auto socket = host::open_socket_in_netns(m_netns.name(), AF_INET, SOCK_DGRAM, 0);
        EXPECT_TRUE(socket.has_value());
        host::UdpStreamSpec spec;
        spec.address = "198.18.0.2";
        spec.port = 7;
        spec.rate_pps = kRatePps;
        spec.count = kPackets;
        auto stream = host::UdpStream::create(*socket, spec);
        EXPECT_TRUE(stream.has_value()) << stream.error().message();
        EXPECT_TRUE(stream->start().has_value());
        return std::move(*stream);
    }

    // Waits for every echo (or the deadline), stops the stream and judges it.
    host::StreamReport finish(host::UdpStream& stream, const std::vector<host::StreamPhase>& phases) {
        EXPECT_TRUE(stream.wait_sending_done(std::chrono::steady_clock::now() + 5s));
        EXPECT_TRUE(stream.wait_received(kPackets, std::chrono::steady_clock::now() + 2s))
            << "echoed " << stream.received() << " of " << stream.sent();
        EXPECT_TRUE(stream.stop().has_value());
        auto report = host::analyze_stream(stream.sent_times(), stream.arrivals(), phases, monotonic_ns(), kRatePps);
        EXPECT_TRUE(report.has_value());
        return report ? *report : host::StreamReport{};
    }

    TestNetns m_netns;
    std::vector<UniqueFd> m_source_queues;
    TapState m_state;
};

std::string describe(const host::PhaseReport& phase) {
    return phase.name + ": sent " + std::to_string(phase.sent) + " lost " + std::to_string(phase.lost) +
           " duplicates " + std::to_string(phase.duplicates) + " reordered " + std::to_string(phase.reordered);
}

}  // namespace

// The source stops reading, offers every queue with the state, the target
// validates, accepts and serves: not one datagram lost, duplicated or
// reordered, the target's first datagram is the source's last plus one, and
// the device is the same one with the carrier untouched.
TEST_P(HandoffTraffic_test, LT_DATA_01_LT_DATA_02_ZeroLossAcrossTheHandOffAt10kPps) {
    const TapCounters before = counters();
    auto source = GuestNic::start(raw_fds(m_source_queues), m_state.vnet_hdr_size, GuestIdentity{});
    ASSERT_TRUE(source.has_value());
    auto stream = start_stream();
    const std::int64_t start_ns = monotonic_ns();
    ASSERT_TRUE(stream.wait_received(kHandOffAfter, std::chrono::steady_clock::now() + 5s))
        << "echoed " << stream.received() << " before the hand-off";

    auto channel = channel_pair();
    ASSERT_TRUE(channel.has_value());
    std::unique_ptr<GuestNic> target_nic;
    std::vector<UniqueFd> target_queues;
    std::int64_t target_serving_ns = 0;
    std::thread target([&] {
        auto incoming = receive_backend(channel->second.get(), std::chrono::steady_clock::now() + 2s);
        ASSERT_TRUE(incoming.has_value()) << incoming.error().message();
        target_queues = std::move(incoming->queues);
        auto nic = GuestNic::start(raw_fds(target_queues), incoming->state.vnet_hdr_size, GuestIdentity{});
        ASSERT_TRUE(nic.has_value());
        target_serving_ns = monotonic_ns();
        target_nic = std::move(*nic);
    });

    (*source)->stop();  // LT-XFER-02: no read after this
    const std::int64_t source_stopped_ns = monotonic_ns();
    auto offered = offer_backend(channel->first.get(), m_state, raw_fds(m_source_queues),
                                 std::chrono::steady_clock::now() + 2s);
    target.join();
    ASSERT_TRUE(offered.has_value()) << offered.error().message();
    m_source_queues.clear();
    ASSERT_NE(target_nic, nullptr);

    const auto report = finish(stream, {{"before", start_ns}, {"hand-off", source_stopped_ns},
                                        {"after", target_serving_ns}});
    target_nic->stop();
    EXPECT_EQ(report.overall.lost, 0U) << describe(report.overall);
    EXPECT_EQ(report.overall.duplicates, 0U) << describe(report.overall);
    EXPECT_EQ(report.overall.reordered, 0U) << describe(report.overall);
    EXPECT_EQ(report.overall.sent, static_cast<std::uint64_t>(kPackets));

    const auto source_seen = (*source)->counters();
    const auto target_seen = target_nic->counters();
    ASSERT_TRUE(source_seen.last_stream_seq && target_seen.first_stream_seq);
    EXPECT_EQ(*target_seen.first_stream_seq, *source_seen.last_stream_seq + 1);
    EXPECT_EQ(*target_seen.last_stream_seq, static_cast<std::uint32_t>(kPackets - 1));

    const TapCounters after = counters();
    EXPECT_EQ(after.ifindex, before.ifindex);
    EXPECT_EQ(after.carrier_changes, before.carrier_changes);
    EXPECT_EQ(after.tx_dropped, 0U);
    EXPECT_EQ(after.tx_packets - before.tx_packets, source_seen.frames + target_seen.frames)
        << "every frame the TAP queued was read by one side or the other";
    std::printf("[ figures  ] queues=%d rate=%.0f pps achieved=%.0f pps blackout (source stopped -> target serving) "
                "%.0f us, frames source=%llu target=%llu\n",
                GetParam(), kRatePps, report.rate_achieved_pps, (target_serving_ns - source_stopped_ns) / 1e3,
                static_cast<unsigned long long>(source_seen.frames), static_cast<unsigned long long>(target_seen.frames));
}

// LT-XFER-04: the target rejects the offer; the source still owns the queues,
// resumes reading and the stream loses nothing.
TEST_P(HandoffTraffic_test, LT_XFER_04_RejectedHandOffSourceResumesWithZeroLoss) {
    auto source = GuestNic::start(raw_fds(m_source_queues), m_state.vnet_hdr_size, GuestIdentity{});
    ASSERT_TRUE(source.has_value());
    auto stream = start_stream();
    const std::int64_t start_ns = monotonic_ns();
    ASSERT_TRUE(stream.wait_received(kHandOffAfter, std::chrono::steady_clock::now() + 5s));

    auto channel = channel_pair();
    ASSERT_TRUE(channel.has_value());
    std::thread target([&] {
        auto incoming = receive_offer(channel->second.get(), std::chrono::steady_clock::now() + 2s);
        ASSERT_TRUE(incoming.has_value()) << incoming.error().message();
        ASSERT_TRUE(reject_offer(channel->second.get(), {LivetapErrc::Rejected, "the test's target says no"},
                                 std::chrono::steady_clock::now() + 2s));
    });
    (*source)->stop();
    const std::int64_t stopped_ns = monotonic_ns();
    auto offered = offer_backend(channel->first.get(), m_state, raw_fds(m_source_queues),
                                 std::chrono::steady_clock::now() + 2s);
    target.join();
    ASSERT_FALSE(offered.has_value());
    EXPECT_EQ(offered.error().code, LivetapErrc::Rejected);
    EXPECT_NE(offered.error().detail.find("says no"), std::string::npos);

    auto resumed = GuestNic::start(raw_fds(m_source_queues), m_state.vnet_hdr_size, GuestIdentity{});
    ASSERT_TRUE(resumed.has_value());
    const std::int64_t resumed_ns = monotonic_ns();
    const auto report = finish(stream, {{"before", start_ns}, {"rejected", stopped_ns}, {"resumed", resumed_ns}});
    EXPECT_EQ(report.overall.lost, 0U) << describe(report.overall);
    EXPECT_EQ(report.overall.duplicates, 0U) << describe(report.overall);
    EXPECT_EQ(*(*resumed)->counters().first_stream_seq, *(*source)->counters().last_stream_seq + 1);
}

// A sink (echo_streams false) reads and counts the stream without echoing
// it: the peer receives nothing, and the reader's runs hold every seq once,
// in order, as the kernel's tx_packets agrees.
TEST_P(HandoffTraffic_test, ASinkCountsTheStreamItDoesNotEcho) {
    const TapCounters before = counters();
    GuestIdentity sink;
    sink.echo_streams = false;
    auto nic = GuestNic::start(raw_fds(m_source_queues), m_state.vnet_hdr_size, sink);
    ASSERT_TRUE(nic.has_value());
    auto stream = start_stream();
    ASSERT_TRUE(stream.wait_sent(kPackets, std::chrono::steady_clock::now() + 5s)) << "sent " << stream.sent();
    ASSERT_TRUE(stream.wait_sending_done(std::chrono::steady_clock::now() + 5s));
    // Read once the last seq is: the reader reads a queue in order.
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    auto last_read = [&] {
        const auto seen = (*nic)->counters();
        return seen.last_stream_seq && *seen.last_stream_seq == static_cast<std::uint32_t>(kPackets - 1);
    };
    while (!last_read() && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(1ms);  // polls the condition, bounded by the deadline
    }
    ASSERT_TRUE(stream.stop().has_value());
    (*nic)->stop();
    const auto seen = (*nic)->counters();
    ASSERT_EQ(seen.streams.size(), 1U);
    const StreamSeen& flow = seen.streams.begin()->second;
    EXPECT_EQ(flow.runs, (std::vector<SeqRun>{{0, static_cast<std::uint32_t>(kPackets - 1)}}));
    EXPECT_FALSE(flow.runs_truncated);
    EXPECT_EQ(seen.udp_echoed, 0U);
    EXPECT_EQ(stream.received(), 0U) << "a sink echoed stream datagrams";
    EXPECT_EQ(counters().tx_packets - before.tx_packets, seen.frames);
}

INSTANTIATE_TEST_SUITE_P(Queues, HandoffTraffic_test, ::testing::Values(1, 2),
                         [](const auto& info) { return std::to_string(info.param) + "queue"; });
