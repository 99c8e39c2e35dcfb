#include "vnetct/guest_agent/link_changes.hpp"

#include <array>
#include <set>
#include <utility>

namespace vnetct::guest_agent {

std::string operstate_name(std::uint8_t oper_state) {
    // Same table as the kernel's sysfs operstate attribute (IF_OPER_*).
    static constexpr std::array<const char*, 7> kNames = {
        "unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up"};
    return oper_state < kNames.size() ? kNames[oper_state] : "unknown";
}

LinkChangeDetector::LinkChangeDetector(NameResolver fallback_resolver)
    : m_fallback_resolver(std::move(fallback_resolver)) {}

void LinkChangeDetector::seed(const LinkState& state) { m_links[state.ifindex] = state; }

std::optional<LinkEvent> LinkChangeDetector::on_new_link(const LinkState& state) {
    const auto found = m_links.find(state.ifindex);
    if (found == m_links.end()) {
        m_links.emplace(state.ifindex, state);
        return make_event(LinkEventKind::Added, state, {});
    }
    const LinkState& previous = found->second;
    std::vector<std::string> changes;
    if (previous.master_ifindex != state.master_ifindex) {
        changes.emplace_back("master");
    }
    if (previous.operstate != state.operstate) {
        changes.emplace_back("operstate");
    }
    if (previous.name != state.name) {
        changes.emplace_back("name");
    }
    if (previous.mac != state.mac) {
        changes.emplace_back("mac");
    }
    found->second = state;
    if (changes.empty()) {
        return std::nullopt;
    }
    return make_event(LinkEventKind::Changed, state, std::move(changes));
}

std::optional<LinkEvent> LinkChangeDetector::on_del_link(const LinkState& state) {
    // The event names the master the link had, resolved before it is forgotten.
    LinkEvent event = make_event(LinkEventKind::Removed, state, {});
    m_links.erase(state.ifindex);
    return event;
}

std::vector<LinkEvent> LinkChangeDetector::resync(const std::vector<LinkState>& dump) {
    std::vector<LinkEvent> events;
    std::set<int> present;
    for (const LinkState& state : dump) {
        present.insert(state.ifindex);
        if (auto event = on_new_link(state)) {
            events.push_back(std::move(*event));
        }
    }
    std::vector<LinkState> vanished;
    for (const auto& [ifindex, state] : m_links) {
        if (!present.contains(ifindex)) {
            vanished.push_back(state);
        }
    }
    for (const LinkState& state : vanished) {
        if (auto event = on_del_link(state)) {
            events.push_back(std::move(*event));
        }
    }
    return events;
}

std::optional<std::string> LinkChangeDetector::master_name(int master_ifindex) const {
    if (master_ifindex == 0) {
        return std::nullopt;
    }
    if (const auto found = m_links.find(master_ifindex); found != m_links.end()) {
        return found->second.name;
    }
    if (m_fallback_resolver) {
        return m_fallback_resolver(master_ifindex);
    }
    return std::nullopt;
}

LinkEvent LinkChangeDetector::make_event(LinkEventKind kind, const LinkState& state,
                                         std::vector<std::string> changes) const {
    return LinkEvent{kind, state, master_name(state.master_ifindex), std::move(changes)};
}

nlohmann::json link_event_to_json(const LinkEvent& event, std::int64_t t_guest_ns,
                                  std::int64_t t_guest_realtime_ns) {
    nlohmann::json json = {
        {"event", to_string(event.kind)},
        {"t_guest_ns", t_guest_ns},
        {"t_guest_realtime_ns", t_guest_realtime_ns},
        {"ifindex", event.state.ifindex},
        {"name", event.state.name},
        {"master", event.master_name ? nlohmann::json(*event.master_name) : nlohmann::json(nullptr)},
        {"operstate", event.state.operstate},
        {"mac", event.state.mac.empty() ? nlohmann::json(nullptr) : nlohmann::json(event.state.mac)},
        {"changes", event.changes},
    };
    return json;
}

}  // namespace vnetct::guest_agent
