// UDP echo services on 0.0.0.0:<port>, driven by the agent's poll loop: every
// datagram goes back to its sender unchanged.
#pragma once

#include <cstdint>
#include <map>

#include "vnetct/guest_agent/errors.hpp"

namespace vnetct::guest_agent {

class UdpEchoService {
public:
    UdpEchoService() = default;
    UdpEchoService(const UdpEchoService&) = delete;
    UdpEchoService& operator=(const UdpEchoService&) = delete;
    ~UdpEchoService();

    // Idempotent per port; returns the bound port.
    [[nodiscard]] GuestResult<std::uint16_t> start(std::uint16_t port);
    // port -> socket fd
    [[nodiscard]] const std::map<std::uint16_t, int>& sockets() const { return m_sockets; }
    // Echoes every datagram readable on `fd` now, without blocking.
    void echo_pending(int fd);

    [[nodiscard]] std::uint64_t echoed_datagrams() const { return m_echoed; }

private:
    std::map<std::uint16_t, int> m_sockets;
    std::uint64_t m_echoed = 0;
};

}  // namespace vnetct::guest_agent
