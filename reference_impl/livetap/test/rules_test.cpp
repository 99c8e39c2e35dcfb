#include "vnetct/reference_impl/rules.hpp"

#include <gtest/gtest.h>

#include <set>

using namespace vnetct::reference_impl;

TEST(LivetapRules_test, IdsAreUniqueAndWellFormed) {
    std::set<std::string_view> seen;
    for (const Rule& rule : rules_of(RuleTable::Livetap)) {
        EXPECT_TRUE(seen.insert(rule.id).second) << "duplicate rule id " << rule.id;
        EXPECT_EQ(rule.id.substr(0, 3), "LT-") << rule.id;
        EXPECT_FALSE(rule.area.empty()) << rule.id;
        EXPECT_EQ(rule.sentence.back(), '.') << rule.id << " sentence must be one full sentence";
    }
    EXPECT_EQ(seen.size(), 13U);
}

TEST(LivetapRules_test, TheRegistryFindsLivetapRulesInTheirOwnTable) {
    const auto rule = find_rule("LT-XFER-01");
    ASSERT_TRUE(rule.has_value());
    EXPECT_NE(rule->sentence.find("SCM_RIGHTS"), std::string_view::npos);
    EXPECT_FALSE(find_rule("LT-NOPE-99").has_value());
    for (const Rule& failover : rules_of(RuleTable::Failover)) {
        EXPECT_NE(failover.id, "LT-XFER-01");
    }
}
