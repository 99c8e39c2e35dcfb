#include "vnetct/guest_agent/udp_echo.hpp"

#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

namespace vnetct::guest_agent {
namespace {

// Uses loopback only; nothing on the host's network changes.
class UdpEchoService_test : public ::testing::Test {
protected:
    void TearDown() override {
        if (m_client >= 0) {
            ::close(m_client);
        }
    }

    // Binds an echo port the kernel picked free, by probing with a throwaway socket.
    std::uint16_t free_port() {
        const int probe = ::socket(AF_INET, SOCK_DGRAM, 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        ::bind(probe, reinterpret_cast<sockaddr*>(&address), sizeof address);
        socklen_t length = sizeof address;
        ::getsockname(probe, reinterpret_cast<sockaddr*>(&address), &length);
        ::close(probe);
        return ntohs(address.sin_port);
    }

    UdpEchoService m_sut;
    int m_client = -1;
};

TEST_F(UdpEchoService_test, EchoesDatagramToItsSender) {
    const std::uint16_t port = free_port();
    ASSERT_TRUE(m_sut.start(port).has_value());
    ASSERT_EQ(m_sut.start(port).value(), port) << "starting twice is idempotent";
    ASSERT_EQ(m_sut.sockets().size(), 1U);

    m_client = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in echo{};
    echo.sin_family = AF_INET;
    echo.sin_port = htons(port);
    echo.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const std::string payload("seq=1 \x00\xff", 8);
    ASSERT_EQ(::sendto(m_client, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&echo), sizeof echo),
              static_cast<ssize_t>(payload.size()));

    pollfd readable{m_sut.sockets().at(port), POLLIN, 0};
    ASSERT_EQ(::poll(&readable, 1, 2000), 1) << "datagram did not arrive within 2 s";
    m_sut.echo_pending(readable.fd);
    EXPECT_EQ(m_sut.echoed_datagrams(), 1U);

    pollfd reply_ready{m_client, POLLIN, 0};
    ASSERT_EQ(::poll(&reply_ready, 1, 2000), 1) << "echo did not come back within 2 s";
    std::string reply(100, '\0');
    const ssize_t count = ::recv(m_client, reply.data(), reply.size(), 0);
    ASSERT_GE(count, 0);
    reply.resize(static_cast<std::size_t>(count));
    EXPECT_EQ(reply, payload);
}

TEST_F(UdpEchoService_test, PortInUseIsAnError) {
    const std::uint16_t port = free_port();
    m_client = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    ASSERT_EQ(::bind(m_client, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    const auto started = m_sut.start(port);
    ASSERT_FALSE(started.has_value());
    EXPECT_EQ(started.error().code, GuestErrc::UdpEchoFailed);
}

}  // namespace
}  // namespace vnetct::guest_agent
