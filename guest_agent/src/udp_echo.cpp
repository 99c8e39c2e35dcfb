#include "vnetct/guest_agent/udp_echo.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>

namespace vnetct::guest_agent {

UdpEchoService::~UdpEchoService() {
    for (const auto& [port, fd] : m_sockets) {
        ::close(fd);
    }
}

GuestResult<std::uint16_t> UdpEchoService::start(std::uint16_t port) {
    if (m_sockets.contains(port)) {
        return port;
    }
    const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return fail(GuestErrc::UdpEchoFailed, describe_errno("socket(AF_INET, SOCK_DGRAM)", errno));
    }
    const int enable = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &enable, sizeof enable);
    sockaddr_in local{};
    local.sin_family = AF_INET;
    local.sin_port = htons(port);
    local.sin_addr.s_addr = htonl(INADDR_ANY);
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&local), sizeof local) < 0) {
        const int error = errno;
        ::close(fd);
        return fail(GuestErrc::UdpEchoFailed, describe_errno("bind 0.0.0.0:" + std::to_string(port), error));
    }
    m_sockets.emplace(port, fd);
    return port;
}

void UdpEchoService::echo_pending(int fd) {
    std::array<std::uint8_t, 65536> datagram{};
    for (;;) {
        sockaddr_storage sender{};
        socklen_t sender_length = sizeof sender;
        const ssize_t count = ::recvfrom(fd, datagram.data(), datagram.size(), MSG_DONTWAIT,
                                         reinterpret_cast<sockaddr*>(&sender), &sender_length);
        if (count < 0) {
            if (errno == EINTR) {
                continue;
            }
            return;  // EAGAIN, or an ICMP error queued from an earlier reply
        }
        if (::sendto(fd, datagram.data(), static_cast<std::size_t>(count), MSG_DONTWAIT,
                     reinterpret_cast<const sockaddr*>(&sender), sender_length) >= 0) {
            ++m_echoed;
        }
    }
}

}  // namespace vnetct::guest_agent
