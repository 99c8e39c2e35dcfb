// Turns rtnetlink link messages into netdev-added / -removed / -changed
// events. Pure: it keeps the last known state per ifindex and is fed parsed
// link states, so tests drive it with synthetic ones.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vnetct/common/result.hpp"

namespace vnetct::guest_agent {

struct LinkState {
    int ifindex = 0;
    std::string name;
    int master_ifindex = 0;  // 0: no master
    std::string operstate;   // sysfs spelling: "up", "down", "lowerlayerdown", ...
    std::string mac;         // "" when the link has no address

    friend bool operator==(const LinkState&, const LinkState&) = default;
};

// X(Name, "event name on the agent channel")
#define VNETCT_LINK_EVENT_KINDS(X)  \
    X(Added, "netdev-added")        \
    X(Removed, "netdev-removed")    \
    X(Changed, "netdev-changed")
VNETCT_DEFINE_ENUM(LinkEventKind, VNETCT_LINK_EVENT_KINDS)

struct LinkEvent {
    LinkEventKind kind = LinkEventKind::Changed;
    LinkState state;
    std::optional<std::string> master_name;
    std::vector<std::string> changes;  // subset of master, operstate, name, mac
};

// sysfs operstate spelling of IFLA_OPERSTATE (RFC 2863 IF_OPER_*).
[[nodiscard]] std::string operstate_name(std::uint8_t oper_state);

class LinkChangeDetector {
public:
    // Resolves a master ifindex the table does not know (if_indextoname in the agent).
    using NameResolver = std::function<std::optional<std::string>(int ifindex)>;

    explicit LinkChangeDetector(NameResolver fallback_resolver = {});

    // Records the state without producing an event (the initial dump).
    void seed(const LinkState& state);
    // RTM_NEWLINK: Added for an unknown ifindex, Changed when a tracked field
    // changed, nothing otherwise.
    [[nodiscard]] std::optional<LinkEvent> on_new_link(const LinkState& state);
    // RTM_DELLINK
    [[nodiscard]] std::optional<LinkEvent> on_del_link(const LinkState& state);

    // Resynchronisation after lost messages: states from a fresh dump, then
    // removals for every tracked ifindex absent from it.
    [[nodiscard]] std::vector<LinkEvent> resync(const std::vector<LinkState>& dump);

    [[nodiscard]] const std::map<int, LinkState>& links() const { return m_links; }

private:
    [[nodiscard]] std::optional<std::string> master_name(int master_ifindex) const;
    [[nodiscard]] LinkEvent make_event(LinkEventKind kind, const LinkState& state,
                                       std::vector<std::string> changes) const;

    NameResolver m_fallback_resolver;
    std::map<int, LinkState> m_links;
};

// {"event":"netdev-changed","t_guest_ns":..,"t_guest_realtime_ns":..,"ifindex":..,...}
[[nodiscard]] nlohmann::json link_event_to_json(const LinkEvent& event, std::int64_t t_guest_ns,
                                                std::int64_t t_guest_realtime_ns);

}  // namespace vnetct::guest_agent
