#include "vnetct/teaming/rules.hpp"

#include <array>

namespace vnetct::teaming {
namespace {

#define VNETCT_TEAMING_RULE_ENTRY(id, area, sentence) Rule{id, area, sentence},
constexpr std::array kTeamingRules{VNETCT_TEAMING_RULES(VNETCT_TEAMING_RULE_ENTRY)};
#undef VNETCT_TEAMING_RULE_ENTRY

}  // namespace

std::span<const Rule> teaming_rules() { return kTeamingRules; }

std::optional<Rule> find_teaming_rule(std::string_view id) {
    for (const Rule& rule : kTeamingRules) {
        if (rule.id == id) {
            return rule;
        }
    }
    return std::nullopt;
}

}  // namespace vnetct::teaming
