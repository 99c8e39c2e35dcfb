// rtnetlink: parsing link messages (pure), the RTMGRP_LINK monitor socket and
// IPv4 configuration (thin wrappers over the real socket).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vnetct/guest_agent/errors.hpp"
#include "vnetct/guest_agent/link_changes.hpp"

namespace vnetct::guest_agent {

struct LinkMessage {
    enum class Type { NewLink, DelLink, Done, Error, Other };
    Type type = Type::Other;
    std::uint32_t sequence = 0;
    std::uint32_t port_id = 0;
    int error = 0;                   // Type::Error: positive errno (0 = ACK)
    std::optional<LinkState> state;  // NewLink / DelLink
};

// Every netlink message in one received datagram; truncated tails are dropped.
// Link messages of family AF_BRIDGE (bridge port state) come out as Type::Other.
[[nodiscard]] std::vector<LinkMessage> parse_netlink_messages(std::span<const std::uint8_t> datagram);

// Builds one RTM_NEWLINK / RTM_DELLINK message (for tests and fakes).
[[nodiscard]] std::vector<std::uint8_t> encode_link_message(std::uint16_t type, const LinkState& state,
                                                            std::uint8_t oper_state,
                                                            std::uint32_t sequence = 0,
                                                            std::uint8_t family = 0 /* AF_UNSPEC */);

struct Ipv4Prefix {
    std::array<std::uint8_t, 4> address{};
    int prefix_length = 0;
};

// "198.18.0.2/24"
[[nodiscard]] GuestResult<Ipv4Prefix> parse_ipv4_prefix(std::string_view text);

// Assigns the address (RTM_NEWADDR) and sets the link up (RTM_NEWLINK, IFF_UP),
// each acknowledged by the kernel within a 2 s deadline.
[[nodiscard]] GuestResult<void> configure_ipv4(const std::string& ifname, const Ipv4Prefix& prefix);

// The non-blocking socket subscribed to RTMGRP_LINK.
class LinkMonitor {
public:
    struct ReadOutcome {
        std::vector<LinkMessage> messages;
        bool overrun = false;  // ENOBUFS: the kernel dropped messages, resync needed
    };

    [[nodiscard]] static GuestResult<LinkMonitor> open();

    LinkMonitor(LinkMonitor&& other) noexcept;
    LinkMonitor& operator=(LinkMonitor&& other) noexcept;
    LinkMonitor(const LinkMonitor&) = delete;
    LinkMonitor& operator=(const LinkMonitor&) = delete;
    ~LinkMonitor();

    [[nodiscard]] int fd() const { return m_fd; }
    [[nodiscard]] std::uint32_t port_id() const { return m_port_id; }
    // RTM_GETLINK dump; replies carry `sequence`.
    [[nodiscard]] GuestResult<void> request_dump(std::uint32_t sequence);
    // Everything readable now, without blocking.
    [[nodiscard]] GuestResult<ReadOutcome> read_pending();

private:
    LinkMonitor(int fd, std::uint32_t port_id) : m_fd(fd), m_port_id(port_id) {}
    int m_fd = -1;
    std::uint32_t m_port_id = 0;
};

}  // namespace vnetct::guest_agent
