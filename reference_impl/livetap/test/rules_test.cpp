#include "vnetct/livetap/rules.hpp"

#include <gtest/gtest.h>

#include <set>

#include "vnetct/reference_impl/rules.hpp"

using namespace vnetct::livetap;

TEST(LivetapRules_test, IdsAreUniqueAndWellFormed) {
    std::set<std::string_view> seen;
    for (const Rule& rule : livetap_rules()) {
        EXPECT_TRUE(seen.insert(rule.id).second) << "duplicate rule id " << rule.id;
        EXPECT_EQ(rule.id.substr(0, 3), "LT-") << rule.id;
        EXPECT_FALSE(rule.area.empty()) << rule.id;
        EXPECT_EQ(rule.sentence.back(), '.') << rule.id << " sentence must be one full sentence";
    }
    EXPECT_EQ(seen.size(), 13U);
}

TEST(LivetapRules_test, FindsLivetapRulesOnlyAndLeavesTheFailoverTableAlone) {
    const auto rule = find_livetap_rule("LT-XFER-01");
    ASSERT_TRUE(rule.has_value());
    EXPECT_NE(rule->sentence.find("SCM_RIGHTS"), std::string_view::npos);
    EXPECT_FALSE(find_livetap_rule("FO-NEG-01").has_value());
    EXPECT_FALSE(find_livetap_rule("LT-NOPE-99").has_value());
    EXPECT_FALSE(vnetct::reference_impl::find_rule("LT-XFER-01").has_value());
}
