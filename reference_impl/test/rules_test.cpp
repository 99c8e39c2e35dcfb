#include "vnetct/reference_impl/rules.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>

using namespace vnetct::reference_impl;

TEST(Rules_test, IdsAreUniqueAndWellFormed) {
    std::set<std::string_view> seen;
    for (const Rule& rule : rules_of(RuleTable::Failover)) {
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

TEST(Rules_test, OneRegistryHoldsEveryTableInOrderWithUniqueIds) {
    std::set<std::string_view> seen;
    for (const Rule& rule : all_rules()) {
        EXPECT_TRUE(seen.insert(rule.id).second) << "duplicate rule id " << rule.id;
        EXPECT_EQ(find_rule(rule.id)->sentence, rule.sentence);
    }
    std::size_t total = 0;
    for (const RuleTable table : {RuleTable::Failover, RuleTable::Livetap, RuleTable::Teaming, RuleTable::GroupId}) {
        const auto rules = rules_of(table);
        ASSERT_FALSE(rules.empty());
        EXPECT_EQ(rules.data(), all_rules().data() + total) << "tables are consecutive, in RuleTable order";
        total += rules.size();
    }
    EXPECT_EQ(total, all_rules().size());
    EXPECT_EQ(all_rules().size(), 50U);
    EXPECT_EQ(rules_of(RuleTable::Livetap).front().id, "LT-CFG-01");
    EXPECT_EQ(rules_of(RuleTable::GroupId).back().id, "FO-GRP-05");
}
