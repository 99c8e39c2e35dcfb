// The blackout's accounting (handoff_stamps.hpp): what stays out of the window
// between the source's stop and the target's first read, what is in it and in
// which order. Stamps are made up here (ns); backend_process_test judges a real
// hand-off with the same check.
#include <gtest/gtest.h>

#include <algorithm>

#include "vnetct/livetap/handoff_stamps.hpp"

using namespace vnetct::livetap;

namespace {

constexpr std::int64_t kStopped = 1'000'000;
constexpr std::int64_t kServing = 1'150'000;

class BlackoutAccounting_test : public ::testing::Test {
  protected:
    // A hand-off as channel.hpp describes it: 150 us from stop to first read.
    BlackoutAccounting_test() {
        m_source.mark("command", 900'000);
        m_source.mark("target_ready", 990'000);
        m_source.mark("stopped", kStopped);
        m_source.mark("offer_sent", 1'015'000);
        m_source.mark("accept_received", 1'110'000);
        m_source.mark("commit_sent", 1'115'000);
        m_target.mark("accepted", 950'000);
        m_target.mark("nic_spawned", 960'000);
        m_target.mark("offer_received", 1'030'000);
        m_target.mark("identity_checked", 1'090'000);
        m_target.mark("accept_sent", 1'095'000);
        m_target.mark("commit_received", 1'140'000);
        m_target.mark("reader_polling", kServing);
    }

    std::vector<std::string> problems() const {
        return blackout_accounting_problems(m_source, m_target, kStopped, kServing);
    }
    bool one_problem_says(const std::string& words) const {
        const auto found = problems();
        return found.size() == 1 && found.front().find(words) != std::string::npos;
    }

    HandOffStamps m_source;
    HandOffStamps m_target;
};

}  // namespace

TEST_F(BlackoutAccounting_test, AHandOffAsDescribedHasNoProblem) { EXPECT_EQ(problems(), std::vector<std::string>{}); }

TEST_F(BlackoutAccounting_test, TheTargetsWakeUpForTheConnectionInsideTheBlackoutIsNamed) {
    HandOffStamps target;
    target.mark("accepted", kStopped + 400'000);  // stop, then connect: the old order
    for (const char* step : {"nic_spawned", "offer_received", "identity_checked", "commit_received", "reader_polling"}) {
        target.mark(step, *m_target.at(step));
    }
    m_target = target;
    EXPECT_TRUE(one_problem_says("accepted came 400 us into the blackout")) << ::testing::PrintToString(problems());
}

TEST_F(BlackoutAccounting_test, AReaderThreadCreatedAfterTheCommitIsNamed) {
    HandOffStamps target;
    for (const char* step : {"accepted", "offer_received", "identity_checked", "commit_received"}) {
        target.mark(step, *m_target.at(step));
    }
    target.mark("nic_spawned", 1'145'000);
    target.mark("reader_polling", kServing);
    m_target = target;
    EXPECT_TRUE(one_problem_says("nic_spawned came 145 us into the blackout")) << ::testing::PrintToString(problems());
}

TEST_F(BlackoutAccounting_test, AServingTimeThatIsNotTheFirstPollIsNamed) {
    EXPECT_EQ(blackout_accounting_problems(m_source, m_target, kStopped, kServing - 20'000),
              std::vector<std::string>{"serving_ns is -20 us off the reader's first poll: the blackout must end "
                                       "when the target can read"});
}

TEST_F(BlackoutAccounting_test, StepsOutOfTheProtocolsOrderAreNamed) {
    HandOffStamps source;
    for (const char* step : {"target_ready", "offer_sent"}) {
        source.mark(step, *m_source.at(step));
    }
    source.mark("accept_received", 1'080'000);  // before the target validated
    m_source = source;
    EXPECT_TRUE(one_problem_says("accept_received came 10 us before identity_checked"))
        << ::testing::PrintToString(problems());
}

TEST_F(BlackoutAccounting_test, AMissingStepIsNamed) {
    EXPECT_EQ(blackout_accounting_problems(m_source, HandOffStamps{}, kStopped, kServing).size(), 6U)
        << "accepted, nic_spawned and the target's four steps inside";
}

TEST(HandOffStamps_test, DescribeAndParseRoundTrip) {
    HandOffStamps stamps;
    stamps.mark("stopped", 12);
    stamps.mark("offer_sent", 345);
    stamps.mark("stopped", 99);  // a repeated step keeps its first stamp
    EXPECT_EQ(stamps.describe(), "stopped:12,offer_sent:345");
    const auto parsed = HandOffStamps::parse(stamps.describe());
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(parsed->describe(), stamps.describe());
    EXPECT_EQ(parsed->at("offer_sent"), 345);
    EXPECT_EQ(HandOffStamps::parse("-")->describe(), "-");
    for (const char* broken : {"stopped", "stopped:", ":12", "stopped:12x", "stopped:12,"}) {
        EXPECT_FALSE(HandOffStamps::parse(broken).has_value()) << broken;
    }
}
