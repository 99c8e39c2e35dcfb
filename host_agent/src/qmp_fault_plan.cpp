#include "vnetct/host_agent/qmp_fault_plan.hpp"

#include <algorithm>
#include <array>
#include <utility>

#include "vnetct/host_agent/json_line_channel.hpp"

namespace vnetct::host_agent {

namespace {

using Json = nlohmann::json;
using PlanError = Error<HostErrc>;

constexpr std::array<std::string_view, 17> known_fields = {
    "name",   "event", "data",         "command", "arguments", "on_connect", "action", "ms",          "forge",
    "after_ms", "drop_trigger", "set", "remove",  "return",    "count",      "armed_by", "disarmed_by"};

// The fields each action takes besides the common ones.
std::vector<std::string_view> action_fields(FaultAction action) {
    switch (action) {
        case FaultAction::Drop:
            return {};
        case FaultAction::Delay:
            return {"ms"};
        case FaultAction::Forge:
            return {"forge", "after_ms", "drop_trigger"};
        case FaultAction::EditReply:
            return {"set", "remove"};
        case FaultAction::Reply:
            return {"return", "forge", "after_ms"};
    }
    return {};
}

// Reads one rule; every error names the rule and the field.
class RuleReader {
  public:
    RuleReader(const Json& rule, std::size_t index) : m_rule(rule), m_index(index) {}

    HostResult<FaultRule> read() {
        if (!m_rule.is_object()) {
            return fail(HostErrc::InvalidArgument, where() + "expected an object, got " + brief(m_rule));
        }
        for (const auto& [key, value] : m_rule.items()) {
            if (std::find(known_fields.begin(), known_fields.end(), key) == known_fields.end()) {
                return field_error(key, "unknown field (known: name, event, data, command, arguments, on_connect, "
                                        "action, ms, forge, after_ms, drop_trigger, set, remove, return, count, "
                                        "armed_by, disarmed_by)");
            }
        }
        FaultRule rule;
        if (!m_rule.contains("name") || !m_rule["name"].is_string() || m_rule["name"].get<std::string>().empty()) {
            return field_error("name", "expected a non-empty string" + got("name"));
        }
        rule.name = m_rule["name"].get<std::string>();
        m_name = rule.name;
        if (auto trigger = read_trigger(rule); !trigger) {
            return tl::unexpected(trigger.error());
        }
        if (auto action = read_action(rule); !action) {
            return tl::unexpected(action.error());
        }
        if (m_rule.contains("count")) {
            const Json& count = m_rule["count"];
            if (!count.is_number_integer() || count.get<std::int64_t>() < 1) {
                return field_error("count", "expected a positive integer" + got("count"));
            }
            rule.count = count.get<std::uint64_t>();
        }
        for (const char* key : {"armed_by", "disarmed_by"}) {
            if (!m_rule.contains(key)) {
                continue;
            }
            auto pattern = read_pattern(key);
            if (!pattern) {
                return tl::unexpected(pattern.error());
            }
            (std::string_view(key) == "armed_by" ? rule.armed_by : rule.disarmed_by) = std::move(*pattern);
        }
        return rule;
    }

  private:
    [[nodiscard]] std::string where() const {
        std::string text = "fault plan rule " + std::to_string(m_index);
        if (!m_name.empty()) {
            text += " (\"" + m_name + "\")";
        }
        return text + ": ";
    }

    [[nodiscard]] tl::unexpected<PlanError> field_error(std::string_view field, const std::string& expected) const {
        return fail(HostErrc::InvalidArgument, where() + "field \"" + std::string(field) + "\": " + expected);
    }

    [[nodiscard]] std::string got(std::string_view field) const {
        const auto found = m_rule.find(field);
        return found == m_rule.end() ? " (missing)" : ", got " + brief(*found);
    }

    HostResult<void> read_trigger(FaultRule& rule) {
        std::vector<std::string_view> given;
        for (const char* key : {"event", "command", "on_connect"}) {
            if (m_rule.contains(key)) {
                given.emplace_back(key);
            }
        }
        if (given.size() != 1) {
            return field_error(given.empty() ? "event" : given[1],
                               "expected exactly one trigger of \"event\", \"command\", \"on_connect\"" +
                                   std::string(given.empty() ? " (none given)" : ", got more than one"));
        }
        if (given[0] == "on_connect") {
            if (m_rule["on_connect"] != true) {
                return field_error("on_connect", "expected true" + got("on_connect"));
            }
            rule.trigger = FaultTrigger::OnConnect;
        } else {
            const std::string key(given[0]);
            if (!m_rule[key].is_string() || m_rule[key].get<std::string>().empty()) {
                return field_error(key, "expected a non-empty " + key + " name" + got(key));
            }
            rule.trigger = key == "event" ? FaultTrigger::Event : FaultTrigger::Command;
            rule.message_name = m_rule[key].get<std::string>();
        }
        const char* subset_key = rule.trigger == FaultTrigger::Command ? "arguments" : "data";
        for (const char* key : {"data", "arguments"}) {
            if (!m_rule.contains(key)) {
                continue;
            }
            if (std::string_view(key) != subset_key || rule.trigger == FaultTrigger::OnConnect) {
                return field_error(key, std::string("is only for ") +
                                            (std::string_view(key) == "data" ? "\"event\"" : "\"command\"") +
                                            " triggers");
            }
            if (!m_rule[key].is_object()) {
                return field_error(key, "expected an object (a subset to match)" + got(key));
            }
            rule.subset = m_rule[key];
        }
        return {};
    }

    HostResult<void> read_action(FaultRule& rule) {
        const auto action = m_rule.find("action");
        bool known = false;
        if (action != m_rule.end() && action->is_string()) {
            for (FaultAction candidate : {FaultAction::Drop, FaultAction::Delay, FaultAction::Forge,
                                          FaultAction::EditReply, FaultAction::Reply}) {
                if (to_string(candidate) == action->get<std::string>()) {
                    rule.action = candidate;
                    known = true;
                }
            }
        }
        if (!known) {
            return field_error("action", "expected one of \"drop\", \"delay\", \"forge\", \"edit-reply\", \"reply\"" +
                                             got("action"));
        }
        const bool for_events = rule.action == FaultAction::Drop || rule.action == FaultAction::Delay;
        const bool for_commands = rule.action == FaultAction::EditReply || rule.action == FaultAction::Reply;
        if ((for_events && rule.trigger != FaultTrigger::Event) ||
            (for_commands && rule.trigger != FaultTrigger::Command)) {
            return field_error("action", "\"" + std::string(to_string(rule.action)) + "\" takes " +
                                             (for_events ? "an \"event\"" : "a \"command\"") + " trigger, not " +
                                             std::string(to_string(rule.trigger)));
        }
        // Fields of another action are refused.
        const std::vector<std::string_view> own = action_fields(rule.action);
        for (FaultAction other : {FaultAction::Delay, FaultAction::Forge, FaultAction::EditReply, FaultAction::Reply}) {
            for (std::string_view field : action_fields(other)) {
                if (m_rule.contains(field) && std::find(own.begin(), own.end(), field) == own.end()) {
                    return field_error(field, "is only for action \"" + std::string(to_string(other)) +
                                                  "\", not \"" + std::string(to_string(rule.action)) + "\"");
                }
            }
        }
        switch (rule.action) {
            case FaultAction::Drop:
                return {};
            case FaultAction::Delay:
                return read_milliseconds("ms", true, rule.delay);
            case FaultAction::Forge:
                return read_forge(rule);
            case FaultAction::EditReply:
                for (const char* key : {"set", "remove"}) {
                    if (m_rule.contains(key) && !m_rule[key].is_object()) {
                        return field_error(key, "expected an object" + got(key));
                    }
                }
                if (!m_rule.contains("set") && !m_rule.contains("remove")) {
                    return field_error("set", "edit-reply needs \"set\" or \"remove\" (or both)");
                }
                rule.set = m_rule.value("set", Json());
                rule.remove = m_rule.value("remove", Json());
                return {};
            case FaultAction::Reply:
                if (!m_rule.contains("return")) {
                    return field_error("return", "expected the value to return (missing)");
                }
                rule.reply = m_rule["return"];
                return m_rule.contains("forge") ? read_forge(rule) : HostResult<void>{};
        }
        return {};
    }

    HostResult<void> read_milliseconds(const char* key, bool required, std::chrono::milliseconds& out) {
        if (!m_rule.contains(key)) {
            if (required) {
                return field_error(key, "expected a non-negative integer of milliseconds (missing)");
            }
            return {};
        }
        const Json& value = m_rule[key];
        if (!value.is_number_integer() || value.get<std::int64_t>() < 0) {
            return field_error(key, "expected a non-negative integer of milliseconds" + got(key));
        }
        out = std::chrono::milliseconds(value.get<std::int64_t>());
        return {};
    }

    HostResult<void> read_forge(FaultRule& rule) {
        const auto forge = m_rule.find("forge");
        if (forge == m_rule.end() || !forge->is_array() || forge->empty()) {
            return field_error("forge", "expected a non-empty array of {\"event\": NAME, \"data\": {...}}" +
                                            got("forge"));
        }
        for (std::size_t i = 0; i < forge->size(); ++i) {
            const Json& entry = (*forge)[i];
            const std::string item = "forge[" + std::to_string(i) + "]";
            if (!entry.is_object() || !entry.contains("event") || !entry["event"].is_string() ||
                entry["event"].get<std::string>().empty()) {
                return field_error(item, "expected {\"event\": NAME, \"data\": {...}}, got " + brief(entry));
            }
            for (const auto& [key, value] : entry.items()) {
                if (key != "event" && key != "data") {
                    return field_error(item, "unknown field \"" + key + "\" (known: event, data)");
                }
            }
            if (entry.contains("data") && !entry["data"].is_object()) {
                return field_error(item + ".data", "expected an object, got " + brief(entry["data"]));
            }
            rule.forge.push_back(ForgedEvent{entry["event"].get<std::string>(), entry.value("data", Json())});
        }
        if (auto after = read_milliseconds("after_ms", false, rule.forge_after); !after) {
            return after;
        }
        if (m_rule.contains("drop_trigger")) {
            if (!m_rule["drop_trigger"].is_boolean()) {
                return field_error("drop_trigger", "expected true or false" + got("drop_trigger"));
            }
            rule.drop_trigger = m_rule["drop_trigger"].get<bool>();
            if (rule.drop_trigger && rule.trigger != FaultTrigger::Event) {
                return field_error("drop_trigger", "only an \"event\" trigger can be dropped, not " +
                                                       std::string(to_string(rule.trigger)));
            }
        }
        return {};
    }

    HostResult<EventPattern> read_pattern(const char* key) {
        const Json& value = m_rule[key];
        if (!value.is_object() || !value.contains("event") || !value["event"].is_string() ||
            value["event"].get<std::string>().empty()) {
            return field_error(key, "expected {\"event\": NAME, \"data\": {subset}}" + got(key));
        }
        for (const auto& [member, ignored] : value.items()) {
            if (member != "event" && member != "data") {
                return field_error(key, "unknown field \"" + member + "\" (known: event, data)");
            }
        }
        if (value.contains("data") && !value["data"].is_object()) {
            return field_error(std::string(key) + ".data", "expected an object, got " + brief(value["data"]));
        }
        return EventPattern{value["event"].get<std::string>(), value.value("data", Json())};
    }

    const Json& m_rule;
    std::size_t m_index;
    std::string m_name;
};

}  // namespace

bool EventPattern::matches(std::string_view event, const nlohmann::json& event_data) const {
    return event == name && json_contains(event_data.is_null() ? Json::object() : event_data, data);
}

HostResult<FaultPlan> parse_fault_plan(const nlohmann::json& plan) {
    if (!plan.is_object() || !plan.contains("rules") || !plan["rules"].is_array()) {
        return fail(HostErrc::InvalidArgument,
                    "fault plan: expected {\"rules\": [...]}, got " + brief(plan));
    }
    for (const auto& [key, value] : plan.items()) {
        if (key != "rules") {
            return fail(HostErrc::InvalidArgument, "fault plan: unknown field \"" + key + "\" (known: rules)");
        }
    }
    FaultPlan parsed;
    for (std::size_t i = 0; i < plan["rules"].size(); ++i) {
        auto rule = RuleReader(plan["rules"][i], i).read();
        if (!rule) {
            return tl::unexpected(rule.error());
        }
        for (std::size_t j = 0; j < parsed.rules.size(); ++j) {
            if (parsed.rules[j].name == rule->name) {
                return fail(HostErrc::InvalidArgument, "fault plan rule " + std::to_string(i) +
                                                           ": field \"name\": \"" + rule->name +
                                                           "\" is already the name of rule " + std::to_string(j));
            }
        }
        parsed.rules.push_back(std::move(*rule));
    }
    return parsed;
}

bool json_contains(const nlohmann::json& value, const nlohmann::json& subset) {
    if (subset.is_null()) {
        return true;
    }
    if (!subset.is_object()) {
        return value == subset;
    }
    if (!value.is_object()) {
        return false;
    }
    for (const auto& [key, wanted] : subset.items()) {
        const auto found = value.find(key);
        if (found == value.end() || (wanted.is_null() ? !found->is_null() : !json_contains(*found, wanted))) {
            return false;
        }
    }
    return true;
}

std::size_t remove_containing(nlohmann::json& value, const nlohmann::json& subset) {
    std::size_t removed = 0;
    if (value.is_array()) {
        Json kept = Json::array();
        for (Json& element : value) {
            if (element.is_object() && json_contains(element, subset)) {
                ++removed;
                continue;
            }
            removed += remove_containing(element, subset);
            kept.push_back(std::move(element));
        }
        value = std::move(kept);
    } else if (value.is_object()) {
        for (Json& member : value) {
            removed += remove_containing(member, subset);
        }
    }
    return removed;
}

}  // namespace vnetct::host_agent
