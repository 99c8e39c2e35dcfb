#include "vnetct/guest_agent/rtnetlink.hpp"

#include <arpa/inet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <utility>

#include "vnetct/guest_agent/ethtool.hpp"

namespace vnetct::guest_agent {
namespace {

constexpr std::size_t kReceiveBufferBytes = 64 * 1024;

template <typename T>
T read_unaligned(const std::uint8_t* data) {
    T value{};
    std::memcpy(&value, data, sizeof value);
    return value;
}

std::optional<LinkState> parse_link_payload(const std::uint8_t* message, std::size_t length) {
    const std::size_t info_offset = NLMSG_HDRLEN;
    if (length < info_offset + sizeof(ifinfomsg)) {
        return std::nullopt;
    }
    const auto info = read_unaligned<ifinfomsg>(message + info_offset);
    if (info.ifi_family == AF_BRIDGE) {
        return std::nullopt;  // bridge port notifications: RTM_DELLINK here means "left the bridge"
    }
    LinkState state;
    state.ifindex = info.ifi_index;
    state.operstate = operstate_name(0);

    std::size_t offset = info_offset + NLMSG_ALIGN(sizeof(ifinfomsg));
    while (offset + sizeof(rtattr) <= length) {
        const auto attribute = read_unaligned<rtattr>(message + offset);
        if (attribute.rta_len < sizeof(rtattr) || offset + attribute.rta_len > length) {
            break;
        }
        const std::uint8_t* payload = message + offset + RTA_LENGTH(0);
        const std::size_t payload_length = attribute.rta_len - RTA_LENGTH(0);
        switch (attribute.rta_type & NLA_TYPE_MASK) {
            case IFLA_IFNAME:
                state.name.assign(reinterpret_cast<const char*>(payload),
                                  strnlen(reinterpret_cast<const char*>(payload), payload_length));
                break;
            case IFLA_MASTER:
                if (payload_length >= sizeof(std::uint32_t)) {
                    state.master_ifindex = static_cast<int>(read_unaligned<std::uint32_t>(payload));
                }
                break;
            case IFLA_OPERSTATE:
                if (payload_length >= 1) {
                    state.operstate = operstate_name(payload[0]);
                }
                break;
            case IFLA_ADDRESS:
                state.mac = format_mac(payload, payload_length);
                break;
            default:
                break;
        }
        offset += RTA_ALIGN(attribute.rta_len);
    }
    return state;
}

void append_bytes(std::vector<std::uint8_t>& buffer, const void* data, std::size_t length) {
    const auto* bytes = static_cast<const std::uint8_t*>(data);
    buffer.insert(buffer.end(), bytes, bytes + length);
    buffer.resize(NLMSG_ALIGN(buffer.size()), 0);
}

void append_attribute(std::vector<std::uint8_t>& buffer, std::uint16_t type, const void* data,
                      std::size_t length) {
    rtattr attribute{};
    attribute.rta_len = static_cast<unsigned short>(RTA_LENGTH(length));
    attribute.rta_type = type;
    const std::size_t start = buffer.size();
    buffer.insert(buffer.end(), reinterpret_cast<const std::uint8_t*>(&attribute),
                  reinterpret_cast<const std::uint8_t*>(&attribute) + sizeof attribute);
    buffer.resize(start + RTA_LENGTH(0));
    append_bytes(buffer, data, length);
}

// A netlink request: header placeholder, then the family header.
template <typename FamilyHeader>
std::vector<std::uint8_t> start_message(const FamilyHeader& family_header) {
    std::vector<std::uint8_t> buffer(NLMSG_HDRLEN, 0);
    append_bytes(buffer, &family_header, sizeof family_header);
    return buffer;
}

void finish_message(std::vector<std::uint8_t>& buffer, std::uint16_t type, std::uint16_t flags,
                    std::uint32_t sequence) {
    nlmsghdr header{};
    header.nlmsg_len = static_cast<std::uint32_t>(buffer.size());
    header.nlmsg_type = type;
    header.nlmsg_flags = flags;
    header.nlmsg_seq = sequence;
    std::memcpy(buffer.data(), &header, sizeof header);
}

class NetlinkSocket {
public:
    explicit NetlinkSocket(int fd) : m_fd(fd) {}
    NetlinkSocket(const NetlinkSocket&) = delete;
    NetlinkSocket& operator=(const NetlinkSocket&) = delete;
    ~NetlinkSocket() {
        if (m_fd >= 0) {
            ::close(m_fd);
        }
    }
    [[nodiscard]] int fd() const { return m_fd; }

private:
    int m_fd;
};

GuestResult<void> send_to_kernel(int fd, const std::vector<std::uint8_t>& message, std::string_view what) {
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (::sendto(fd, message.data(), message.size(), 0, reinterpret_cast<const sockaddr*>(&kernel),
                 sizeof kernel) < 0) {
        return fail(GuestErrc::NetlinkFailed, describe_errno(std::string("sending ") + std::string(what), errno));
    }
    return {};
}

// Sends one request with NLM_F_ACK and waits (socket deadline) for its ACK.
GuestResult<void> transact(int fd, std::vector<std::uint8_t> message, std::uint16_t type,
                           std::uint16_t flags, std::uint32_t sequence, std::string_view what) {
    finish_message(message, type, static_cast<std::uint16_t>(flags | NLM_F_REQUEST | NLM_F_ACK), sequence);
    if (auto sent = send_to_kernel(fd, message, what); !sent) {
        return sent;
    }
    std::vector<std::uint8_t> buffer(kReceiveBufferBytes);
    for (;;) {
        const ssize_t count = ::recv(fd, buffer.data(), buffer.size(), 0);
        if (count < 0) {
            if (errno == EINTR) {
                continue;
            }
            const std::string reason = errno == EAGAIN ? "no acknowledgement within 2 s" : std::strerror(errno);
            return fail(GuestErrc::NetlinkFailed, std::string(what) + ": " + reason);
        }
        for (const LinkMessage& reply :
             parse_netlink_messages({buffer.data(), static_cast<std::size_t>(count)})) {
            if (reply.type != LinkMessage::Type::Error || reply.sequence != sequence) {
                continue;
            }
            if (reply.error != 0) {
                return fail(GuestErrc::NetlinkFailed, describe_errno(what, reply.error));
            }
            return {};
        }
    }
}

}  // namespace

std::vector<LinkMessage> parse_netlink_messages(std::span<const std::uint8_t> datagram) {
    std::vector<LinkMessage> messages;
    std::size_t offset = 0;
    while (offset + sizeof(nlmsghdr) <= datagram.size()) {
        const std::uint8_t* start = datagram.data() + offset;
        const auto header = read_unaligned<nlmsghdr>(start);
        if (header.nlmsg_len < sizeof(nlmsghdr) || offset + header.nlmsg_len > datagram.size()) {
            break;
        }
        LinkMessage message;
        message.sequence = header.nlmsg_seq;
        message.port_id = header.nlmsg_pid;
        switch (header.nlmsg_type) {
            case NLMSG_DONE:
                message.type = LinkMessage::Type::Done;
                break;
            case NLMSG_ERROR:
                message.type = LinkMessage::Type::Error;
                if (header.nlmsg_len >= NLMSG_HDRLEN + sizeof(int)) {
                    message.error = -read_unaligned<int>(start + NLMSG_HDRLEN);
                }
                break;
            case RTM_NEWLINK:
            case RTM_DELLINK:
                message.type = header.nlmsg_type == RTM_NEWLINK ? LinkMessage::Type::NewLink
                                                                : LinkMessage::Type::DelLink;
                message.state = parse_link_payload(start, header.nlmsg_len);
                if (!message.state) {
                    message.type = LinkMessage::Type::Other;
                }
                break;
            default:
                break;
        }
        messages.push_back(std::move(message));
        offset += NLMSG_ALIGN(header.nlmsg_len);
    }
    return messages;
}

std::vector<std::uint8_t> encode_link_message(std::uint16_t type, const LinkState& state,
                                              std::uint8_t oper_state, std::uint32_t sequence,
                                              std::uint8_t family) {
    ifinfomsg info{};
    info.ifi_family = family;
    info.ifi_index = state.ifindex;
    auto buffer = start_message(info);
    append_attribute(buffer, IFLA_IFNAME, state.name.c_str(), state.name.size() + 1);
    if (state.master_ifindex != 0) {
        const auto master = static_cast<std::uint32_t>(state.master_ifindex);
        append_attribute(buffer, IFLA_MASTER, &master, sizeof master);
    }
    append_attribute(buffer, IFLA_OPERSTATE, &oper_state, sizeof oper_state);
    if (!state.mac.empty()) {
        std::vector<std::uint8_t> address;
        for (std::size_t i = 0; i + 2 <= state.mac.size(); i += 3) {
            address.push_back(static_cast<std::uint8_t>(std::stoi(state.mac.substr(i, 2), nullptr, 16)));
        }
        append_attribute(buffer, IFLA_ADDRESS, address.data(), address.size());
    }
    finish_message(buffer, type, 0, sequence);
    return buffer;
}

GuestResult<Ipv4Prefix> parse_ipv4_prefix(std::string_view text) {
    const auto slash = text.find('/');
    if (slash == std::string_view::npos) {
        return fail(GuestErrc::BadArgument, "address \"" + std::string(text) + "\" has no /prefix-length");
    }
    Ipv4Prefix prefix;
    const std::string address(text.substr(0, slash));
    if (::inet_pton(AF_INET, address.c_str(), prefix.address.data()) != 1) {
        return fail(GuestErrc::BadArgument, "\"" + address + "\" is not an IPv4 address");
    }
    const std::string_view length = text.substr(slash + 1);
    const auto [end, error] = std::from_chars(length.data(), length.data() + length.size(), prefix.prefix_length);
    if (length.empty() || error != std::errc{} || end != length.data() + length.size() ||
        prefix.prefix_length < 0 || prefix.prefix_length > 32) {
        return fail(GuestErrc::BadArgument, "prefix length \"" + std::string(length) + "\" is not 0-32");
    }
    return prefix;
}

GuestResult<void> configure_ipv4(const std::string& ifname, const Ipv4Prefix& prefix) {
    const unsigned ifindex = ::if_nametoindex(ifname.c_str());
    if (ifindex == 0) {
        return fail(GuestErrc::UnknownInterface, describe_errno(ifname, errno));
    }
    NetlinkSocket socket(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
    if (socket.fd() < 0) {
        return fail(GuestErrc::NetlinkFailed, describe_errno("socket(NETLINK_ROUTE)", errno));
    }
    const timeval deadline{2, 0};
    ::setsockopt(socket.fd(), SOL_SOCKET, SO_RCVTIMEO, &deadline, sizeof deadline);

    ifaddrmsg address_header{};
    address_header.ifa_family = AF_INET;
    address_header.ifa_prefixlen = static_cast<unsigned char>(prefix.prefix_length);
    address_header.ifa_scope = RT_SCOPE_UNIVERSE;
    address_header.ifa_index = ifindex;
    auto address_message = start_message(address_header);
    append_attribute(address_message, IFA_LOCAL, prefix.address.data(), prefix.address.size());
    append_attribute(address_message, IFA_ADDRESS, prefix.address.data(), prefix.address.size());
    if (prefix.prefix_length < 31) {
        std::uint32_t host_order = 0;
        std::memcpy(&host_order, prefix.address.data(), 4);
        const std::uint32_t host_bits = prefix.prefix_length == 0 ? 0xffffffffU : (0xffffffffU >> prefix.prefix_length);
        const std::uint32_t broadcast = htonl(ntohl(host_order) | host_bits);
        append_attribute(address_message, IFA_BROADCAST, &broadcast, sizeof broadcast);
    }
    if (auto added = transact(socket.fd(), std::move(address_message), RTM_NEWADDR,
                              NLM_F_CREATE | NLM_F_REPLACE, 1, "RTM_NEWADDR on " + ifname);
        !added) {
        return added;
    }

    ifinfomsg link_header{};
    link_header.ifi_family = AF_UNSPEC;
    link_header.ifi_index = static_cast<int>(ifindex);
    link_header.ifi_flags = IFF_UP;
    link_header.ifi_change = IFF_UP;
    return transact(socket.fd(), start_message(link_header), RTM_NEWLINK, 0, 2, "RTM_NEWLINK up on " + ifname);
}

GuestResult<LinkMonitor> LinkMonitor::open() {
    const int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) {
        return fail(GuestErrc::NetlinkFailed, describe_errno("socket(NETLINK_ROUTE)", errno));
    }
    LinkMonitor monitor(fd, 0);
    const int buffer_bytes = 4 * 1024 * 1024;
    if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buffer_bytes, sizeof buffer_bytes) < 0) {
        ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer_bytes, sizeof buffer_bytes);
    }
    sockaddr_nl local{};
    local.nl_family = AF_NETLINK;
    local.nl_groups = RTMGRP_LINK;
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&local), sizeof local) < 0) {
        return fail(GuestErrc::NetlinkFailed, describe_errno("bind(RTMGRP_LINK)", errno));
    }
    socklen_t length = sizeof local;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) == 0) {
        monitor.m_port_id = local.nl_pid;
    }
    return monitor;
}

LinkMonitor::LinkMonitor(LinkMonitor&& other) noexcept
    : m_fd(std::exchange(other.m_fd, -1)), m_port_id(other.m_port_id) {}

LinkMonitor& LinkMonitor::operator=(LinkMonitor&& other) noexcept {
    if (this != &other) {
        if (m_fd >= 0) {
            ::close(m_fd);
        }
        m_fd = std::exchange(other.m_fd, -1);
        m_port_id = other.m_port_id;
    }
    return *this;
}

LinkMonitor::~LinkMonitor() {
    if (m_fd >= 0) {
        ::close(m_fd);
    }
}

GuestResult<void> LinkMonitor::request_dump(std::uint32_t sequence) {
    ifinfomsg info{};
    info.ifi_family = AF_UNSPEC;
    auto message = start_message(info);
    finish_message(message, RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, sequence);
    return send_to_kernel(m_fd, message, "RTM_GETLINK dump");
}

GuestResult<LinkMonitor::ReadOutcome> LinkMonitor::read_pending() {
    ReadOutcome outcome;
    std::vector<std::uint8_t> buffer(kReceiveBufferBytes);
    for (;;) {
        const ssize_t count = ::recv(m_fd, buffer.data(), buffer.size(), MSG_DONTWAIT);
        if (count < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return outcome;
            }
            if (errno == ENOBUFS) {
                outcome.overrun = true;
                continue;
            }
            return fail(GuestErrc::NetlinkFailed, describe_errno("receiving link messages", errno));
        }
        auto messages = parse_netlink_messages({buffer.data(), static_cast<std::size_t>(count)});
        for (auto& message : messages) {
            outcome.messages.push_back(std::move(message));
        }
    }
}

}  // namespace vnetct::guest_agent
