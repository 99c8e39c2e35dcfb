#include "vnetct/guest_agent/json_line.hpp"

#include <gtest/gtest.h>

#include "fake_sysfs.hpp"
#include "vnetct/guest_agent/netdev_report.hpp"

namespace vnetct::guest_agent {
namespace {

using nlohmann::json;

// Interface names may hold any byte except '/', ':' and whitespace.
class JsonLine_test : public ::testing::Test {
protected:
    static std::string line_for(const std::string& name) { return to_json_line(json{{"name", name}}); }
};

TEST_F(JsonLine_test, QuotesBackslashesAndControlCharactersAreEscaped) {
    EXPECT_EQ(line_for("a\"b\\c"), "{\"name\":\"a\\\"b\\\\c\"}\n");
    EXPECT_EQ(line_for("x\x01y\x7f"), "{\"name\":\"x\\u0001y\x7f\"}\n");
    EXPECT_EQ(line_for("tab\tnl\n"), "{\"name\":\"tab\\tnl\\n\"}\n");
}

TEST_F(JsonLine_test, InvalidUtf8BecomesReplacementCharacter) {
    const std::string line = line_for("eth\xff");
    EXPECT_EQ(line, "{\"name\":\"eth\xEF\xBF\xBD\"}\n");
    EXPECT_TRUE(json::accept(line));
}

TEST_F(JsonLine_test, AlwaysExactlyOneLine) {
    const std::string line = line_for("a\nb\rc");
    EXPECT_EQ(line.find('\n'), line.size() - 1);
}

TEST_F(JsonLine_test, ReportOfOddlyNamedNetdevsStaysParseable) {
    testing::FakeSysfs sysfs;
    testing::FakeEthtool ethtool;
    sysfs.add_netdev("we\"ird\\", 7, "52:54:00:00:00:07");
    sysfs.add_netdev("ctl\x01", 8, "52:54:00:00:00:08");
    sysfs.add_netdev("bad\xfe", 9, "52:54:00:00:00:09");
    const auto report = build_netdev_report(sysfs.root(), ethtool);
    ASSERT_TRUE(report.has_value());
    const json parsed = json::parse(to_json_line(*report));
    ASSERT_EQ(parsed.at("netdevs").size(), 3U);
    EXPECT_EQ(parsed.at("netdevs")[0].at("name"), "we\"ird\\");
    EXPECT_EQ(parsed.at("netdevs")[1].at("name"), "ctl\x01");
    EXPECT_EQ(parsed.at("netdevs")[2].at("name"), "bad\xEF\xBF\xBD");
}

}  // namespace
}  // namespace vnetct::guest_agent
