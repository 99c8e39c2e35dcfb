#include "vnetct/reference_impl/rules.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>

using namespace vnetct::reference_impl;

TEST(Rules_test, FindRuleByIdAndUnknownId) {
    const auto rule = find_rule("FO-NEG-02");
    ASSERT_TRUE(rule.has_value());
    EXPECT_EQ(rule->area, "negotiation");
    EXPECT_NE(rule->sentence.find("FAILOVER_NEGOTIATED"), std::string_view::npos);
    EXPECT_FALSE(find_rule("FO-NOPE-99").has_value());
    EXPECT_FALSE(find_rule("").has_value());
}

TEST(Rules_test, OneRegistryHoldsEveryTableInOrderWithUniqueIds) {
    struct Table {
        RuleTable table;
        std::string_view prefix;
        std::size_t size;
    };
    const Table tables[] = {{RuleTable::Failover, "FO-", 25},
                            {RuleTable::Livetap, "LT-", 13},
                            {RuleTable::Teaming, "TEAM-", 8},
                            {RuleTable::GroupId, "FO-GRP-", 5}};
    std::set<std::string_view> seen;
    std::size_t total = 0;
    for (const auto& [table, prefix, size] : tables) {
        const auto rules = rules_of(table);
        EXPECT_EQ(rules.size(), size) << prefix;
        EXPECT_EQ(rules.data(), all_rules().data() + total) << "tables are consecutive, in RuleTable order";
        total += rules.size();
        for (const Rule& rule : rules) {
            EXPECT_TRUE(seen.insert(rule.id).second) << "duplicate rule id " << rule.id;
            EXPECT_TRUE(rule.id.starts_with(prefix)) << rule.id;
            EXPECT_FALSE(rule.area.empty()) << rule.id;
            EXPECT_EQ(rule.sentence.back(), '.') << rule.id << " sentence must be one full sentence";
            EXPECT_EQ(find_rule(rule.id)->sentence, rule.sentence);
        }
    }
    EXPECT_EQ(total, all_rules().size());
    EXPECT_EQ(all_rules().size(), 51U);
}

TEST(Rules_test, FindRuleSearchesEveryTable) {
    const auto rule = find_rule("LT-XFER-01");
    ASSERT_TRUE(rule.has_value());
    EXPECT_NE(rule->sentence.find("SCM_RIGHTS"), std::string_view::npos);
    EXPECT_EQ(find_rule("TEAM-08")->area, "checker input");
    EXPECT_EQ(find_rule("FO-GRP-05")->area, "group id");
    EXPECT_FALSE(find_rule("TEAM-99").has_value());
}
