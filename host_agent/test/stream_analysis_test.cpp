#include "vnetct/host_agent/stream_analysis.hpp"

#include <gtest/gtest.h>

#include <set>
#include <vector>

using namespace vnetct::host_agent;

namespace {

constexpr std::int64_t ms = 1'000'000;

// `count` packets, one every millisecond from t = 0.
std::vector<std::int64_t> sent_every_ms(std::size_t count) {
    std::vector<std::int64_t> sent;
    for (std::size_t seq = 0; seq < count; ++seq) {
        sent.push_back(static_cast<std::int64_t>(seq) * ms);
    }
    return sent;
}

// An echo of every packet but `lost`, in order, `rtt_ns` after it was sent.
std::vector<EchoArrival> echoes(const std::vector<std::int64_t>& sent, const std::set<std::uint32_t>& lost = {},
                                std::int64_t rtt_ns = 100'000) {
    std::vector<EchoArrival> arrivals;
    for (std::uint32_t seq = 0; seq < sent.size(); ++seq) {
        if (lost.count(seq) == 0) {
            arrivals.push_back({seq, sent[seq] + rtt_ns});
        }
    }
    return arrivals;
}

}  // namespace

class StreamAnalysis_test : public ::testing::Test {
  protected:
    StreamReport analyze(const std::vector<std::int64_t>& sent, const std::vector<EchoArrival>& arrivals,
                         const std::vector<StreamPhase>& phases, std::int64_t end_ns, double rate_asked = 0) {
        auto report = analyze_stream(sent, arrivals, phases, end_ns, rate_asked);
        EXPECT_TRUE(report.has_value()) << report.error().message();
        return report.value_or(StreamReport{});
    }
};

TEST_F(StreamAnalysis_test, NoLoss) {
    const auto sent = sent_every_ms(10);
    const StreamReport m_sut = analyze(sent, echoes(sent), {{"steady", 0}}, 10 * ms, 1000);

    ASSERT_EQ(m_sut.phases.size(), 1U);
    const PhaseReport& steady = m_sut.phases[0];
    EXPECT_EQ(steady.name, "steady");
    EXPECT_EQ(steady.start_ns, 0);
    EXPECT_EQ(steady.end_ns, 10 * ms);
    EXPECT_EQ(steady.duration_ns(), 10 * ms);
    EXPECT_EQ(steady.sent, 10U);
    EXPECT_EQ(steady.received, 10U);
    EXPECT_EQ(steady.lost, 0U);
    EXPECT_EQ(steady.duplicates, 0U);
    EXPECT_EQ(steady.reordered, 0U);
    EXPECT_TRUE(steady.loss_windows.empty());
    EXPECT_FALSE(steady.longest_loss_window().has_value());
    EXPECT_EQ(m_sut.overall.name, "overall");
    EXPECT_EQ(m_sut.overall.sent, 10U);
    EXPECT_EQ(m_sut.overall.received, 10U);
    EXPECT_DOUBLE_EQ(m_sut.rate_asked_pps, 1000);
    EXPECT_DOUBLE_EQ(m_sut.rate_achieved_pps, 1000);  // 9 intervals of 1 ms
    EXPECT_EQ(m_sut.rtt_median_ns, 100'000);
    EXPECT_EQ(m_sut.rtt_max_ns, 100'000);
}

TEST_F(StreamAnalysis_test, OneLossWindowAcrossAPhaseBoundaryBelongsToThePhaseWhereItStarts) {
    const auto sent = sent_every_ms(20);
    const StreamReport m_sut =
        analyze(sent, echoes(sent, {8, 9, 10, 11, 12}), {{"before", 0}, {"migrating", 10 * ms}}, 20 * ms);

    ASSERT_EQ(m_sut.phases.size(), 2U);
    const PhaseReport& before = m_sut.phases[0];
    const PhaseReport& migrating = m_sut.phases[1];
    EXPECT_EQ(before.end_ns, 10 * ms);
    EXPECT_EQ(before.sent, 10U);
    EXPECT_EQ(before.lost, 2U);
    EXPECT_EQ(before.received, 8U);
    EXPECT_EQ(migrating.sent, 10U);
    EXPECT_EQ(migrating.lost, 3U);
    EXPECT_EQ(migrating.received, 7U);
    EXPECT_TRUE(migrating.loss_windows.empty());

    ASSERT_EQ(before.loss_windows.size(), 1U);
    const LossWindow& window = before.loss_windows[0];
    EXPECT_EQ(window.first_seq, 8U);
    EXPECT_EQ(window.last_seq, 12U);
    EXPECT_EQ(window.count, 5U);
    EXPECT_EQ(window.start_ns, 8 * ms);
    EXPECT_EQ(window.end_ns, 13 * ms);  // sent time of seq 13, the first echoed after the run
    EXPECT_EQ(window.duration_ns(), 5 * ms);
    EXPECT_EQ(before.longest_loss_window()->first_seq, 8U);
    EXPECT_EQ(m_sut.overall.lost, 5U);
    ASSERT_EQ(m_sut.overall.loss_windows.size(), 1U);
    EXPECT_EQ(m_sut.overall.longest_loss_window()->duration_ns(), 5 * ms);
}

TEST_F(StreamAnalysis_test, SeveralWindowsAndTheLongestPerPhaseAndOverall) {
    const auto sent = sent_every_ms(30);
    const StreamReport m_sut =
        analyze(sent, echoes(sent, {2, 5, 6, 7, 15, 16, 29}), {{"a", 0}, {"b", 10 * ms}}, 30 * ms);

    ASSERT_EQ(m_sut.overall.loss_windows.size(), 4U);
    EXPECT_EQ(m_sut.phases[0].loss_windows.size(), 2U);
    EXPECT_EQ(m_sut.phases[1].loss_windows.size(), 2U);
    EXPECT_EQ(m_sut.phases[0].longest_loss_window()->first_seq, 5U);
    EXPECT_EQ(m_sut.phases[1].longest_loss_window()->first_seq, 15U);
    EXPECT_EQ(m_sut.overall.longest_loss_window()->first_seq, 5U);
    // Nothing is echoed after the last window: it ends at its last lost packet.
    const LossWindow& last = m_sut.overall.loss_windows.back();
    EXPECT_EQ(last.first_seq, 29U);
    EXPECT_EQ(last.start_ns, 29 * ms);
    EXPECT_EQ(last.end_ns, 29 * ms);
    EXPECT_EQ(last.duration_ns(), 0);
}

TEST_F(StreamAnalysis_test, DuplicatesAreCountedOnceAsReceivedAndApartAsDuplicates) {
    const auto sent = sent_every_ms(5);
    auto arrivals = echoes(sent);
    arrivals.push_back({3, 5 * ms});
    arrivals.push_back({3, 6 * ms});
    arrivals.push_back({0, 6 * ms});  // a late duplicate is a duplicate, not a reordering
    const StreamReport m_sut = analyze(sent, arrivals, {{"all", 0}}, 5 * ms);

    EXPECT_EQ(m_sut.overall.received, 5U);
    EXPECT_EQ(m_sut.overall.duplicates, 3U);
    EXPECT_EQ(m_sut.overall.reordered, 0U);
    EXPECT_EQ(m_sut.overall.lost, 0U);
    EXPECT_EQ(m_sut.phases[0].duplicates, 3U);
    EXPECT_EQ(m_sut.rtt_max_ns, 100'000) << "the rtt is the first echo's";
}

TEST_F(StreamAnalysis_test, AnEchoBelowTheHighestArrivedIsReordered) {
    const auto sent = sent_every_ms(6);
    const std::vector<EchoArrival> arrivals{{0, 1 * ms}, {2, 3 * ms}, {1, 3 * ms},
                                            {5, 6 * ms}, {3, 6 * ms}, {4, 7 * ms}};
    const StreamReport m_sut = analyze(sent, arrivals, {{"a", 0}, {"b", 3 * ms}}, 6 * ms);

    EXPECT_EQ(m_sut.overall.reordered, 3U);  // 1 after 2; 3 and 4 after 5
    EXPECT_EQ(m_sut.phases[0].reordered, 1U);
    EXPECT_EQ(m_sut.phases[1].reordered, 2U);
    EXPECT_EQ(m_sut.overall.lost, 0U);
    // rtts 1, 1, 2, 1, 3, 3 ms: median 1.5 ms
    EXPECT_EQ(m_sut.rtt_median_ns, 1'500'000);
    EXPECT_EQ(m_sut.rtt_max_ns, 3 * ms);
}

TEST_F(StreamAnalysis_test, EmptyPhasesHaveTheirDurationAndNoPackets) {
    const auto sent = sent_every_ms(5);  // 0..4 ms
    const StreamReport m_sut = analyze(sent, echoes(sent), {{"a", 0}, {"instant", 5 * ms}, {"quiet", 5 * ms}}, 20 * ms);

    ASSERT_EQ(m_sut.phases.size(), 3U);
    EXPECT_EQ(m_sut.phases[0].sent, 5U);
    EXPECT_EQ(m_sut.phases[1].sent, 0U);
    EXPECT_EQ(m_sut.phases[1].duration_ns(), 0);
    EXPECT_EQ(m_sut.phases[2].sent, 0U);
    EXPECT_EQ(m_sut.phases[2].received, 0U);
    EXPECT_EQ(m_sut.phases[2].duration_ns(), 15 * ms);
    EXPECT_EQ(m_sut.overall.duration_ns(), 20 * ms);
}

TEST_F(StreamAnalysis_test, PacketsSentBeforeTheFirstPhaseCountInTheFirst) {
    const auto sent = sent_every_ms(10);
    const StreamReport m_sut = analyze(sent, echoes(sent, {1}), {{"late start", 5 * ms}}, 10 * ms);

    EXPECT_EQ(m_sut.phases[0].sent, 10U);
    EXPECT_EQ(m_sut.phases[0].lost, 1U);
    ASSERT_EQ(m_sut.phases[0].loss_windows.size(), 1U);
    EXPECT_EQ(m_sut.overall.start_ns, 0) << "the whole stream starts with its first packet";
}

TEST_F(StreamAnalysis_test, PacketsSentAfterTheEndAreLeftOutWithTheirEchoes) {
    const auto sent = sent_every_ms(10);
    const StreamReport m_sut = analyze(sent, echoes(sent, {8, 9}), {{"all", 0}}, 5 * ms);

    EXPECT_EQ(m_sut.overall.sent, 6U);  // seqs 0..5, sent at or before 5 ms
    EXPECT_EQ(m_sut.overall.received, 6U);
    EXPECT_EQ(m_sut.overall.lost, 0U);
    EXPECT_DOUBLE_EQ(m_sut.rate_achieved_pps, 1000);
}

TEST_F(StreamAnalysis_test, WithoutPhasesOnlyTheOverallReport) {
    const auto sent = sent_every_ms(4);
    const StreamReport m_sut = analyze(sent, echoes(sent, {3}), {}, 4 * ms);
    EXPECT_TRUE(m_sut.phases.empty());
    EXPECT_EQ(m_sut.overall.sent, 4U);
    EXPECT_EQ(m_sut.overall.lost, 1U);
}

TEST_F(StreamAnalysis_test, NothingSentGivesZerosAndNoRtt) {
    const StreamReport m_sut = analyze({}, {}, {{"a", 0}}, 5 * ms);
    EXPECT_EQ(m_sut.overall.sent, 0U);
    EXPECT_EQ(m_sut.rate_achieved_pps, 0);
    EXPECT_FALSE(m_sut.rtt_median_ns.has_value());
    EXPECT_FALSE(m_sut.rtt_max_ns.has_value());
}

TEST_F(StreamAnalysis_test, AllLostIsOneWindowAndNoRtt) {
    const auto sent = sent_every_ms(3);
    const StreamReport m_sut = analyze(sent, {}, {{"a", 0}}, 3 * ms);
    EXPECT_EQ(m_sut.overall.lost, 3U);
    ASSERT_EQ(m_sut.overall.loss_windows.size(), 1U);
    EXPECT_EQ(m_sut.overall.loss_windows[0].end_ns, 2 * ms);
    EXPECT_FALSE(m_sut.rtt_median_ns.has_value());
}

TEST_F(StreamAnalysis_test, AnArrivalWithASeqNeverSentIsAnError) {
    const auto sent = sent_every_ms(3);
    const auto report = analyze_stream(sent, {{0, 1}, {3, 2}}, {{"a", 0}}, 3 * ms);
    ASSERT_FALSE(report.has_value());
    EXPECT_EQ(report.error().code, HostErrc::InvalidArgument);
    EXPECT_NE(report.error().detail.find("arrival #1 has seq 3 but only 3 packets were sent"), std::string::npos)
        << report.error().detail;
}

TEST_F(StreamAnalysis_test, PhasesOutOfOrderAreAnError) {
    const auto report = analyze_stream(sent_every_ms(3), {}, {{"b", 5 * ms}, {"a", 0}}, 10 * ms);
    ASSERT_FALSE(report.has_value());
    EXPECT_EQ(report.error().code, HostErrc::InvalidArgument);
    EXPECT_NE(report.error().detail.find("not sorted"), std::string::npos) << report.error().detail;
}

TEST_F(StreamAnalysis_test, AnEndBeforeTheLastPhaseIsAnError) {
    const auto report = analyze_stream(sent_every_ms(3), {}, {{"a", 0}, {"b", 5 * ms}}, 4 * ms);
    ASSERT_FALSE(report.has_value());
    EXPECT_NE(report.error().detail.find("before the last phase 'b'"), std::string::npos) << report.error().detail;
}

TEST_F(StreamAnalysis_test, SentTimesGoingBackwardsAreAnError) {
    const auto report = analyze_stream({0, 2 * ms, 1 * ms}, {}, {{"a", 0}}, 4 * ms);
    ASSERT_FALSE(report.has_value());
    EXPECT_NE(report.error().detail.find("backwards"), std::string::npos) << report.error().detail;
}
