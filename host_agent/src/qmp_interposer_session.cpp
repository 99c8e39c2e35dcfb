#include "qmp_interposer_session.hpp"

#include <time.h>

#include <algorithm>
#include <utility>

namespace vnetct::host_agent {

namespace {

using Json = nlohmann::json;

// A message's "id" as a key (the JSON text; "" when it has none).
std::string id_key(const Json& message) {
    const auto id = message.find("id");
    return id == message.end() ? std::string() : id->dump();
}

// A line that is no JSON object, or nests deeper than max_json_depth (copying
// it would recurse that deep), is not understood: it passes as it is.
Json parse_line(const std::string& line) {
    if (nests_deeper_than(line, max_json_depth)) {
        return Json();
    }
    Json message = Json::parse(line, nullptr, false);
    return message.is_discarded() || !message.is_object() ? Json() : message;
}

bool is_reply(const Json& message) { return message.contains("return") || message.contains("error"); }

// QMP's event timestamp: CLOCK_REALTIME as {"seconds", "microseconds"}.
Json realtime_timestamp() {
    timespec now{};
    ::clock_gettime(CLOCK_REALTIME, &now);
    return {{"seconds", static_cast<std::int64_t>(now.tv_sec)}, {"microseconds", now.tv_nsec / 1000}};
}

}  // namespace

InterposerSession::InterposerSession(const FaultPlan& plan, std::vector<FaultRuleState>& states,
                                     ActionRecorder record)
    : m_plan(plan), m_states(states), m_record(std::move(record)) {}

std::string InterposerSession::take_to_client() { return std::exchange(m_to_client, {}); }

std::string InterposerSession::take_to_upstream() { return std::exchange(m_to_upstream, {}); }

bool InterposerSession::active(std::size_t rule) const {
    const FaultRuleState& state = m_states[rule];
    const auto& count = m_plan.rules[rule].count;
    return state.armed && !state.disarmed && (!count || state.acted < *count);
}

std::optional<std::size_t> InterposerSession::first_match(FaultTrigger trigger, std::string_view name,
                                                          const Json& data) const {
    for (std::size_t i = 0; i < m_plan.rules.size(); ++i) {
        const FaultRule& rule = m_plan.rules[i];
        if (rule.trigger == trigger && rule.message_name == name && active(i) &&
            json_contains(data.is_null() ? Json::object() : data, rule.subset)) {
            return i;
        }
    }
    return std::nullopt;
}

void InterposerSession::update_arming(std::string_view event, const Json& data, bool arm) {
    for (std::size_t i = 0; i < m_plan.rules.size(); ++i) {
        const auto& pattern = arm ? m_plan.rules[i].armed_by : m_plan.rules[i].disarmed_by;
        if (pattern && pattern->matches(event, data)) {
            (arm ? m_states[i].armed : m_states[i].disarmed) = true;
        }
    }
}

void InterposerSession::from_client(const std::string& line) {
    const Json message = parse_line(line);
    const auto execute = message.is_object() ? message.find("execute") : message.end();
    if (!message.is_object() || execute == message.end() || !execute->is_string()) {
        m_to_upstream += line;
        return;
    }
    const std::string name = execute->get<std::string>();
    if (name == "qmp_capabilities") {
        m_capabilities_id = id_key(message);
    }
    const auto matched = first_match(FaultTrigger::Command, name, message.value("arguments", Json()));
    if (!matched) {
        m_to_upstream += line;
        return;
    }
    const std::size_t rule = *matched;
    ++m_states[rule].acted;
    switch (m_plan.rules[rule].action) {
        case FaultAction::Reply: {
            Json reply{{"return", m_plan.rules[rule].reply}};
            if (message.contains("id")) {
                reply["id"] = message["id"];
            }
            m_to_client += line_of(reply);
            record(rule, "replied", reply, {{"command", message}});
            reply_sent(reply);
            forge(rule);  // what the host would send after that answer (none if the rule forges none)
            return;
        }
        case FaultAction::EditReply:
            m_reply_edits[id_key(message)] = rule;
            m_to_upstream += line;
            return;
        case FaultAction::Forge:
            m_to_upstream += line;
            forge(rule);
            return;
        case FaultAction::Drop:
        case FaultAction::Delay:
            break;  // refused for commands by parse_fault_plan
    }
    m_to_upstream += line;
}

void InterposerSession::from_upstream(const std::string& line) {
    m_eol = line.size() >= 2 && line[line.size() - 2] == '\r' ? "\r\n" : "\n";
    Json message = parse_line(line);
    if (message.is_object() && message.contains("event") && message["event"].is_string()) {
        event_from_upstream(line, message);
    } else if (message.is_object() && is_reply(message)) {
        reply_from_upstream(line, std::move(message));
    } else {
        m_to_client += line;
    }
}

void InterposerSession::event_from_upstream(const std::string& line, const Json& message) {
    const std::string name = message["event"].get<std::string>();
    const Json data = message.value("data", Json());
    // A rule acts on what comes after its arming event and before its
    // disarming event, neither included.
    update_arming(name, data, false);
    const auto matched = first_match(FaultTrigger::Event, name, data);
    if (matched) {
        const std::size_t rule = *matched;
        const FaultRule& plan_rule = m_plan.rules[rule];
        ++m_states[rule].acted;
        switch (plan_rule.action) {
            case FaultAction::Drop:
                record(rule, "dropped", message);
                break;
            case FaultAction::Delay:
                record(rule, "delayed", message, {{"ms", plan_rule.delay.count()}});
                schedule(Scheduled{Clock::now() + plan_rule.delay, 0, rule, false, line, message});
                break;
            case FaultAction::Forge:
                if (plan_rule.drop_trigger) {
                    record(rule, "dropped", message);
                } else {
                    m_to_client += line;
                }
                forge(rule);
                break;
            case FaultAction::EditReply:
            case FaultAction::Reply:
                m_to_client += line;  // refused for events by parse_fault_plan
                break;
        }
    } else {
        m_to_client += line;
    }
    update_arming(name, data, true);
}

void InterposerSession::reply_from_upstream(const std::string& line, Json message) {
    const auto edit = m_reply_edits.find(id_key(message));
    if (edit == m_reply_edits.end()) {
        m_to_client += line;
        reply_sent(message);
        return;
    }
    const std::size_t rule = edit->second;
    m_reply_edits.erase(edit);
    if (!message.contains("return")) {
        m_to_client += line;  // an error reply stays as it is
        reply_sent(message);
        return;
    }
    const Json original = message;
    Json& value = message["return"];
    const FaultRule& plan_rule = m_plan.rules[rule];
    if (plan_rule.set.is_object() && value.is_object()) {
        for (const auto& [key, member] : plan_rule.set.items()) {
            value[key] = member;
        }
    }
    std::size_t removed = 0;
    if (plan_rule.remove.is_object()) {
        removed = remove_containing(value, plan_rule.remove);
    }
    m_to_client += message == original ? line : line_of(message);
    record(rule, "edited-reply", message, {{"original", original}, {"removed", removed}});
    reply_sent(message);
}

void InterposerSession::reply_sent(const Json& reply) {
    if (m_connected || !m_capabilities_id || *m_capabilities_id != id_key(reply) || !reply.contains("return")) {
        return;
    }
    m_connected = true;
    for (std::size_t i = 0; i < m_plan.rules.size(); ++i) {
        if (m_plan.rules[i].trigger == FaultTrigger::OnConnect && active(i)) {
            ++m_states[i].acted;
            forge(i);
        }
    }
}

void InterposerSession::forge(std::size_t rule) {
    const FaultRule& plan_rule = m_plan.rules[rule];
    for (const ForgedEvent& event : plan_rule.forge) {
        if (plan_rule.forge_after.count() == 0) {
            send_forged(rule, event);
        } else {
            schedule(Scheduled{Clock::now() + plan_rule.forge_after, 0, rule, true, {},
                               Json{{"event", event.name}, {"data", event.data}}});
        }
    }
}

void InterposerSession::send_forged(std::size_t rule, const ForgedEvent& event) {
    Json message{{"event", event.name}, {"timestamp", realtime_timestamp()}};
    if (!event.data.is_null()) {
        message["data"] = event.data;
    }
    update_arming(event.name, event.data, false);
    m_to_client += line_of(message);
    record(rule, "forged", message);
    update_arming(event.name, event.data, true);
}

void InterposerSession::schedule(Scheduled entry) {
    entry.sequence = m_next_sequence++;
    m_scheduled.push_back(std::move(entry));
}

std::optional<Clock::time_point> InterposerSession::next_due() const {
    std::optional<Clock::time_point> next;
    for (const Scheduled& entry : m_scheduled) {
        if (!next || entry.due < *next) {
            next = entry.due;
        }
    }
    return next;
}

void InterposerSession::run_due(Clock::time_point now) {
    std::vector<Scheduled> due;
    std::vector<Scheduled> later;
    for (Scheduled& entry : m_scheduled) {
        (entry.due <= now ? due : later).push_back(std::move(entry));
    }
    m_scheduled = std::move(later);
    std::sort(due.begin(), due.end(), [](const Scheduled& a, const Scheduled& b) {
        return a.due != b.due ? a.due < b.due : a.sequence < b.sequence;
    });
    for (const Scheduled& entry : due) {
        if (entry.forged) {
            send_forged(entry.rule, ForgedEvent{entry.message["event"].get<std::string>(), entry.message["data"]});
        } else {
            m_to_client += entry.line;
            record(entry.rule, "released", entry.message);
        }
    }
}

void InterposerSession::record(std::size_t rule, std::string_view action, const Json& message, Json extra) {
    m_record(m_plan.rules[rule].name, action, message, std::move(extra));
}

std::string InterposerSession::line_of(const Json& message) const {
    return message.dump(-1, ' ', false, Json::error_handler_t::replace) + m_eol;
}

}  // namespace vnetct::host_agent
