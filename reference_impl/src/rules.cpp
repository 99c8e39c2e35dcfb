// The one rule registry: every area's X-macro list, in RuleTable order, in one
// array of Rule.
#include "vnetct/reference_impl/rules.hpp"

#include <array>
#include <cstddef>

#include "vnetct/groupid/rules.hpp"
#include "vnetct/livetap/rules.hpp"
#include "vnetct/teaming/rules.hpp"

namespace vnetct::reference_impl {
namespace {

// X(table, LIST), in RuleTable order.
#define VNETCT_RULE_TABLES(X)               \
    X(Failover, VNETCT_FAILOVER_RULES)      \
    X(Livetap, VNETCT_LIVETAP_RULES)        \
    X(Teaming, VNETCT_TEAMING_RULES)        \
    X(GroupId, VNETCT_GROUPID_RULES)

#define VNETCT_RULE_ENTRY(id, area, sentence) Rule{id, area, sentence},
#define VNETCT_RULE_TABLE_ENTRIES(table, LIST) LIST(VNETCT_RULE_ENTRY)
constexpr std::array kRules{VNETCT_RULE_TABLES(VNETCT_RULE_TABLE_ENTRIES)};

#define VNETCT_RULE_COUNT(id, area, sentence) +1
#define VNETCT_RULE_TABLE_SIZE(table, LIST) std::size_t{0} LIST(VNETCT_RULE_COUNT),
constexpr std::array kTableSizes{VNETCT_RULE_TABLES(VNETCT_RULE_TABLE_SIZE)};

#undef VNETCT_RULE_TABLE_SIZE
#undef VNETCT_RULE_COUNT
#undef VNETCT_RULE_TABLE_ENTRIES
#undef VNETCT_RULE_ENTRY
#undef VNETCT_RULE_TABLES

}  // namespace

std::span<const Rule> all_rules() { return kRules; }

std::span<const Rule> rules_of(RuleTable table) {
    const auto index = static_cast<std::size_t>(table);
    std::size_t first = 0;
    for (std::size_t before = 0; before < index; ++before) {
        first += kTableSizes[before];
    }
    return std::span<const Rule>(kRules).subspan(first, kTableSizes[index]);
}

std::optional<Rule> find_rule(std::string_view id) {
    for (const Rule& rule : kRules) {
        if (rule.id == id) {
            return rule;
        }
    }
    return std::nullopt;
}

}  // namespace vnetct::reference_impl
