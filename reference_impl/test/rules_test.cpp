#include "vnetct/reference_impl/rules.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>

using namespace vnetct::reference_impl;

TEST(Rules_test, IdsAreUniqueAndWellFormed) {
    std::set<std::string_view> seen;
    for (const Rule& rule : failover_rules()) {
        EXPECT_TRUE(seen.insert(rule.id).second) << "duplicate rule id " << rule.id;
        EXPECT_EQ(rule.id.substr(0, 3), "FO-") << rule.id;
        EXPECT_FALSE(rule.sentence.empty()) << rule.id;
        EXPECT_EQ(rule.sentence.back(), '.') << rule.id << " sentence must be one full sentence";
    }
    EXPECT_GE(seen.size(), 24U);
}

TEST(Rules_test, FindRuleByIdAndUnknownId) {
    const auto rule = find_rule("FO-NEG-02");
    ASSERT_TRUE(rule.has_value());
    EXPECT_EQ(rule->area, "negotiation");
    EXPECT_NE(rule->sentence.find("FAILOVER_NEGOTIATED"), std::string_view::npos);
    EXPECT_FALSE(find_rule("FO-NOPE-99").has_value());
    EXPECT_FALSE(find_rule("").has_value());
}
