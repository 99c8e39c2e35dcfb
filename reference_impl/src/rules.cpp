#include "vnetct/reference_impl/rules.hpp"

#include <array>

namespace vnetct::reference_impl {
namespace {

#define VNETCT_RULE_ENTRY(id, area, sentence) Rule{id, area, sentence},
constexpr std::array kFailoverRules{VNETCT_FAILOVER_RULES(VNETCT_RULE_ENTRY)};
#undef VNETCT_RULE_ENTRY

}  // namespace

std::span<const Rule> failover_rules() { return kFailoverRules; }

std::optional<Rule> find_rule(std::string_view id) {
    for (const Rule& rule : kFailoverRules) {
        if (rule.id == id) {
            return rule;
        }
    }
    return std::nullopt;
}

}  // namespace vnetct::reference_impl
