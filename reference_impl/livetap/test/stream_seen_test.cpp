// StreamSeen: the seqs one reader read of one stream, as runs in reading
// order, from which the harness rebuilds what a sink (no echo) received.
#include <gtest/gtest.h>

#include "vnetct/livetap/guest_nic.hpp"

using namespace vnetct::livetap;

namespace {

StreamSeen read_all(std::initializer_list<std::uint32_t> seqs) {
    StreamSeen seen;
    for (const auto seq : seqs) {
        seen.read(seq);
    }
    return seen;
}

}  // namespace

TEST(StreamSeen_test, AStreamReadWholeAndInOrderIsOneRun) {
    const auto seen = read_all({0, 1, 2, 3, 4});
    EXPECT_EQ(seen.runs, (std::vector<SeqRun>{{0, 4}}));
    EXPECT_EQ(seen.frames, 5U);
    EXPECT_EQ(seen.first_seq, 0U);
    EXPECT_EQ(seen.last_seq, 4U);
}

TEST(StreamSeen_test, ALossADuplicateAndAReorderingEachStartARun) {
    EXPECT_EQ(read_all({0, 1, 4, 5}).runs, (std::vector<SeqRun>{{0, 1}, {4, 5}}));
    EXPECT_EQ(read_all({0, 1, 1, 2}).runs, (std::vector<SeqRun>{{0, 1}, {1, 2}}));
    EXPECT_EQ(read_all({0, 2, 1, 3}).runs, (std::vector<SeqRun>{{0, 0}, {2, 2}, {1, 1}, {3, 3}}));
}

TEST(StreamSeen_test, TheLargestSeqDoesNotWrapIntoSeqZero) {
    EXPECT_EQ(read_all({0xFFFFFFFFU, 0}).runs, (std::vector<SeqRun>{{0xFFFFFFFFU, 0xFFFFFFFFU}, {0, 0}}));
}

TEST(StreamSeen_test, RunsAreBoundedAndTheTruncationIsSaid) {
    StreamSeen seen;
    for (std::uint32_t seq = 0; seq < 2 * StreamSeen::kMaxSeqRuns + 10; seq += 2) {
        seen.read(seq);  // every other seq: a run each
    }
    EXPECT_EQ(seen.runs.size(), StreamSeen::kMaxSeqRuns);
    EXPECT_TRUE(seen.runs_truncated);
    EXPECT_EQ(seen.frames, StreamSeen::kMaxSeqRuns + 5);
}

TEST(StreamSeen_test, ALaterReaderContinuesTheRunWhereItFollowsOn) {
    auto earlier = read_all({0, 1, 2});
    earlier.append(read_all({3, 4}));
    EXPECT_EQ(earlier.runs, (std::vector<SeqRun>{{0, 4}}));
    EXPECT_EQ(earlier.frames, 5U);
    EXPECT_EQ(earlier.last_seq, 4U);
    auto gap = read_all({0, 1});
    gap.append(read_all({5, 6}));
    EXPECT_EQ(gap.runs, (std::vector<SeqRun>{{0, 1}, {5, 6}}));
    StreamSeen none;
    none.append(read_all({7}));
    EXPECT_EQ(none.first_seq, 7U);
    EXPECT_EQ(none.runs, (std::vector<SeqRun>{{7, 7}}));
}
