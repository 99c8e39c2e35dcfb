#include "vnetct/groupid/rules.hpp"

#include <array>

namespace vnetct::groupid {
namespace {

#define VNETCT_GROUPID_RULE_ENTRY(id, area, sentence) Rule{id, area, sentence},
constexpr std::array kGroupIdRules{VNETCT_GROUPID_RULES(VNETCT_GROUPID_RULE_ENTRY)};
#undef VNETCT_GROUPID_RULE_ENTRY

}  // namespace

std::span<const Rule> groupid_rules() { return kGroupIdRules; }

std::optional<Rule> find_groupid_rule(std::string_view id) {
    for (const Rule& rule : kGroupIdRules) {
        if (rule.id == id) {
            return rule;
        }
    }
    return std::nullopt;
}

}  // namespace vnetct::groupid
