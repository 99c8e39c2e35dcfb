#include "vnetct/guest_agent/line_buffer.hpp"

#include <gtest/gtest.h>

#include "vnetct/guest_agent/output_queue.hpp"

namespace vnetct::guest_agent {
namespace {

class LineBuffer_test : public ::testing::Test {
protected:
    std::vector<InputLine> feed(std::string_view bytes) {
        std::vector<InputLine> lines;
        m_sut.append(bytes, lines);
        return lines;
    }

    LineBuffer m_sut{16};
};

TEST_F(LineBuffer_test, SplitsOnNewlineAcrossReads) {
    EXPECT_TRUE(feed("{\"id\":").empty());
    const auto lines = feed("1}\n{\"id\":2}\r\n{\"id");
    ASSERT_EQ(lines.size(), 2U);
    EXPECT_EQ(lines[0].text, "{\"id\":1}");
    EXPECT_EQ(lines[1].text, "{\"id\":2}");
    ASSERT_EQ(feed("\":3}\n").size(), 1U);
}

TEST_F(LineBuffer_test, EmptyLinesAreSkipped) { EXPECT_TRUE(feed("\n\r\n\n").empty()); }

TEST_F(LineBuffer_test, OversizedLineIsDiscardedAndReportedOnce) {
    EXPECT_TRUE(feed(std::string(10, 'a')).empty());
    EXPECT_TRUE(feed(std::string(10, 'b')).empty());
    const auto lines = feed(std::string(30, 'c') + "\nok\n");
    ASSERT_EQ(lines.size(), 2U);
    EXPECT_TRUE(lines[0].oversized);
    EXPECT_EQ(lines[0].discarded_bytes, 50U);
    EXPECT_FALSE(lines[1].oversized);
    EXPECT_EQ(lines[1].text, "ok");
}

TEST_F(LineBuffer_test, LineOfExactlyTheLimitIsKept) {
    const auto lines = feed(std::string(16, 'x') + "\n");
    ASSERT_EQ(lines.size(), 1U);
    EXPECT_FALSE(lines[0].oversized);
}

TEST_F(LineBuffer_test, ClearDropsPartialLine) {
    EXPECT_TRUE(feed("{\"id\"").empty());
    m_sut.clear();
    const auto lines = feed("x\n");
    ASSERT_EQ(lines.size(), 1U);
    EXPECT_EQ(lines[0].text, "x");
}

class OutputQueue_test : public ::testing::Test {
protected:
    OutputQueue m_sut{100};
};

TEST_F(OutputQueue_test, PartialWritesResumeWhereTheyStopped) {
    m_sut.push("first\n");
    m_sut.push("second\n");
    m_sut.consume(3);
    EXPECT_EQ(m_sut.unsent(), "st\nsecond\n");
    m_sut.consume(10);
    EXPECT_TRUE(m_sut.empty());
}

TEST_F(OutputQueue_test, OverflowDropsLinesAndReportsTheCount) {
    m_sut.push(std::string(90, 'a') + "\n");
    m_sut.push(std::string(20, 'b') + "\n");
    m_sut.push(std::string(20, 'c') + "\n");
    EXPECT_EQ(m_sut.dropped_lines(), 2U);
    m_sut.consume(91);
    m_sut.push("next\n");
    EXPECT_EQ(m_sut.unsent(), "{\"event\":\"output-dropped\",\"lines\":2}\nnext\n");
    EXPECT_EQ(m_sut.dropped_lines(), 0U);
}

}  // namespace
}  // namespace vnetct::guest_agent
