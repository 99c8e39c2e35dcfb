#include "vnetct/livetap/rules.hpp"

#include <array>

namespace vnetct::livetap {
namespace {

#define VNETCT_LIVETAP_RULE_ENTRY(id, area, sentence) Rule{id, area, sentence},
constexpr std::array kLivetapRules{VNETCT_LIVETAP_RULES(VNETCT_LIVETAP_RULE_ENTRY)};
#undef VNETCT_LIVETAP_RULE_ENTRY

}  // namespace

std::span<const Rule> livetap_rules() { return kLivetapRules; }

std::optional<Rule> find_livetap_rule(std::string_view id) {
    for (const Rule& rule : kLivetapRules) {
        if (rule.id == id) {
            return rule;
        }
    }
    return std::nullopt;
}

}  // namespace vnetct::livetap
