#include "vnetct/host_agent/udp_stream.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <functional>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "vnetct/host_agent/transcript.hpp"

using namespace vnetct::host_agent;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// A UDP socket on 127.0.0.1 with a kernel-chosen port.
struct LoopbackSocket {
    LoopbackSocket() {
        fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t length = sizeof address;
        if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
            ADD_FAILURE() << "loopback socket: " << std::strerror(errno);
        }
        port = ntohs(address.sin_port);
    }
    // Hands the fd over (to a UdpStream, which closes it).
    int release() { return std::exchange(fd, -1); }
    ~LoopbackSocket() {
        if (fd >= 0) {
            ::close(fd);
        }
    }
    int fd = -1;
    int port = 0;
};

void send_to(int fd, int port, const std::vector<std::uint8_t>& datagram) {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    to.sin_port = htons(static_cast<std::uint16_t>(port));
    ASSERT_EQ(::sendto(fd, datagram.data(), datagram.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to),
              static_cast<ssize_t>(datagram.size()));
}

// The guest's UDP echo in miniature: sends every datagram back to its sender
// (`copies` times), except those `drop(n)` (n = 1, 2, ... in arrival order)
// says to drop.
class EchoServer {
  public:
    explicit EchoServer(std::function<bool(std::uint64_t)> drop = {}, int copies = 1)
        : m_drop(std::move(drop)), m_copies(copies) {
        m_wake_fd = ::eventfd(0, EFD_CLOEXEC);
        m_thread = std::thread([this] { run(); });
    }
    ~EchoServer() {
        const std::uint64_t one = 1;
        (void)!::write(m_wake_fd, &one, sizeof one);
        m_thread.join();
        ::close(m_wake_fd);
    }
    [[nodiscard]] int port() const { return m_socket.port; }

  private:
    void run() {
        std::array<std::uint8_t, 65536> datagram{};
        std::uint64_t index = 0;
        for (;;) {
            pollfd entries[2] = {{m_socket.fd, POLLIN, 0}, {m_wake_fd, POLLIN, 0}};
            if (::poll(entries, 2, -1) < 0 || entries[1].revents != 0) {
                return;
            }
            sockaddr_in from{};
            socklen_t length = sizeof from;
            const ssize_t got = ::recvfrom(m_socket.fd, datagram.data(), datagram.size(), MSG_DONTWAIT,
                                           reinterpret_cast<sockaddr*>(&from), &length);
            if (got < 0) {
                continue;
            }
            if (m_drop && m_drop(++index)) {
                continue;
            }
            for (int copy = 0; copy < m_copies; ++copy) {
                (void)::sendto(m_socket.fd, datagram.data(), static_cast<std::size_t>(got), 0,
                               reinterpret_cast<sockaddr*>(&from), length);
            }
        }
    }

    LoopbackSocket m_socket;
    std::function<bool(std::uint64_t)> m_drop;
    int m_copies = 1;
    int m_wake_fd = -1;
    std::thread m_thread;
};

bool fd_is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

}  // namespace

class UdpStream_test : public ::testing::Test {
  protected:
    // A stream from a fresh loopback socket to `port` (the socket's port is in
    // m_local_port).
    void create(int port, double rate_pps, std::int64_t count, std::int64_t payload_bytes = 64,
                const std::string& address = "127.0.0.1") {
        LoopbackSocket local;
        m_local_port = local.port;
        auto stream = UdpStream::create(local.release(), {address, port, rate_pps, payload_bytes, count});
        ASSERT_TRUE(stream.has_value()) << stream.error().message();
        m_sut.emplace(std::move(*stream));
    }

    StreamReport analyze() {
        auto report = analyze_stream(m_sut->sent_times(), m_sut->arrivals(), {{"all", 0}}, monotonic_now_ns(),
                                     m_sut->spec().rate_pps);
        EXPECT_TRUE(report.has_value()) << report.error().message();
        return report.value_or(StreamReport{});
    }

    int m_local_port = 0;
    std::optional<UdpStream> m_sut;
};

TEST_F(UdpStream_test, HeaderIsInNetworkByteOrderAndRoundTrips) {
    std::vector<std::uint8_t> payload(64, 0xee);
    const StreamHeader header{stream_magic, 0x0102030405060708, 0x0a0b0c0d, -2};
    encode_stream_header(header, payload);
    EXPECT_EQ(std::vector<std::uint8_t>(payload.begin(), payload.begin() + 16),
              (std::vector<std::uint8_t>{'V', 'N', 'C', 'T', 1, 2, 3, 4, 5, 6, 7, 8, 0x0a, 0x0b, 0x0c, 0x0d}));
    EXPECT_EQ(payload[stream_header_bytes], 0xee) << "the header must not write past its 24 bytes";
    const auto decoded = decode_stream_header(payload);
    ASSERT_TRUE(decoded.has_value());
    EXPECT_EQ(decoded->stream_id, header.stream_id);
    EXPECT_EQ(decoded->seq, header.seq);
    EXPECT_EQ(decoded->sent_ns, -2);
    EXPECT_FALSE(decode_stream_header(std::span<const std::uint8_t>(payload.data(), stream_header_bytes - 1)));
}

TEST_F(UdpStream_test, NoLossAt2000ppsAndTheRateAskedIsAchieved) {
    EchoServer echo;
    create(echo.port(), 2000, 600);  // 0.3 s
    ASSERT_TRUE(m_sut->start().has_value());
    ASSERT_TRUE(m_sut->wait_received(600, Clock::now() + 5s)) << m_sut->received() << " of 600 echoed";
    ASSERT_TRUE(m_sut->stop().has_value());

    EXPECT_EQ(m_sut->sent(), 600U);
    EXPECT_EQ(m_sut->received(), 600U);
    EXPECT_EQ(m_sut->sent_times().size(), 600U);
    EXPECT_EQ(m_sut->arrivals().size(), 600U);
    EXPECT_EQ(m_sut->foreign(), 0U);
    EXPECT_TRUE(m_sut->send_errors().empty());
    const StreamReport report = analyze();
    EXPECT_EQ(report.overall.lost, 0U);
    EXPECT_TRUE(report.overall.loss_windows.empty());
    EXPECT_NEAR(report.rate_achieved_pps, 2000, 200);
    ASSERT_TRUE(report.rtt_median_ns.has_value());
    EXPECT_GT(*report.rtt_median_ns, 0);
}

TEST_F(UdpStream_test, ForeignDatagramsAreCountedAndIgnored) {
    EchoServer echo;
    create(echo.port(), 2000, 50);
    LoopbackSocket stranger;
    std::vector<std::uint8_t> wrong_magic(64, 0);
    encode_stream_header({0x12345678, m_sut->stream_id(), 0, 0}, wrong_magic);
    std::vector<std::uint8_t> other_stream(64, 0);
    encode_stream_header({stream_magic, m_sut->stream_id() + 1, 0, 0}, other_stream);
    std::vector<std::uint8_t> never_sent_seq(64, 0);
    encode_stream_header({stream_magic, m_sut->stream_id(), 1'000'000, 0}, never_sent_seq);
    for (const auto& datagram : {std::vector<std::uint8_t>{1, 2, 3}, wrong_magic, other_stream, never_sent_seq}) {
        send_to(stranger.fd, m_local_port, datagram);
    }

    ASSERT_TRUE(m_sut->start().has_value());
    ASSERT_TRUE(m_sut->wait_received(50, Clock::now() + 5s));
    ASSERT_TRUE(m_sut->stop(50ms).has_value());

    EXPECT_EQ(m_sut->foreign(), 4U);
    EXPECT_EQ(m_sut->received(), 50U);
    EXPECT_EQ(m_sut->arrivals().size(), 50U);
    EXPECT_EQ(analyze().overall.lost, 0U);
}

TEST_F(UdpStream_test, AnEchoDroppingEveryTenthPacketShowsExactlyThoseSeqsLost) {
    EchoServer echo([](std::uint64_t n) { return n % 10 == 0; });
    create(echo.port(), 2000, 200);
    ASSERT_TRUE(m_sut->start().has_value());
    ASSERT_TRUE(m_sut->wait_sending_done(Clock::now() + 5s));
    ASSERT_TRUE(m_sut->wait_received(180, Clock::now() + 5s)) << m_sut->received() << " of 180 echoed";
    ASSERT_TRUE(m_sut->stop().has_value());

    const StreamReport report = analyze();
    EXPECT_EQ(report.overall.sent, 200U);
    EXPECT_EQ(report.overall.received, 180U);
    EXPECT_EQ(report.overall.lost, 20U);
    std::vector<std::uint32_t> lost;
    for (const LossWindow& window : report.overall.loss_windows) {
        EXPECT_EQ(window.count, 1U);
        EXPECT_EQ(window.first_seq, window.last_seq);
        lost.push_back(window.first_seq);
    }
    std::vector<std::uint32_t> expected;
    for (std::uint32_t seq = 9; seq < 200; seq += 10) {
        expected.push_back(seq);
    }
    EXPECT_EQ(lost, expected);
}

TEST_F(UdpStream_test, AnEchoServerReplayingEchoesIsFloodedPastTheDuplicateBound) {
    EchoServer echo({}, 10);  // every packet echoed ten times: 450 duplicates
    LoopbackSocket local;
    UdpStreamSpec spec{"127.0.0.1", echo.port(), 2000, 64, 50};
    spec.max_duplicate_echoes = 100;
    auto stream = UdpStream::create(local.release(), spec);
    ASSERT_TRUE(stream.has_value()) << stream.error().message();
    m_sut.emplace(std::move(*stream));
    ASSERT_TRUE(m_sut->start().has_value());
    ASSERT_TRUE(m_sut->wait_sending_done(Clock::now() + 5s));
    // The receiver stops at the bound: the wait for more than was sent ends then.
    EXPECT_FALSE(m_sut->wait_received(51, Clock::now() + 10s));
    const auto stopped = m_sut->stop();
    ASSERT_FALSE(stopped.has_value());
    EXPECT_EQ(stopped.error().code, HostErrc::Flooded);
    EXPECT_NE(stopped.error().detail.find("more than 100 duplicate echoes"), std::string::npos)
        << stopped.error().detail;
    EXPECT_LE(m_sut->arrivals().size(), 50U + 100U);
}

TEST_F(UdpStream_test, StopIsIdempotentAndAStoppedStreamDoesNotRestart) {
    EchoServer echo;
    create(echo.port(), 1000, 0);  // until stopped
    ASSERT_TRUE(m_sut->start().has_value());
    EXPECT_EQ(m_sut->start().error().code, HostErrc::InvalidArgument);
    ASSERT_TRUE(m_sut->wait_received(5, Clock::now() + 5s));
    m_sut->stop_sending();
    ASSERT_TRUE(m_sut->wait_sending_done(Clock::now()));
    const std::uint64_t sent = m_sut->sent();
    ASSERT_TRUE(m_sut->stop().has_value());
    ASSERT_TRUE(m_sut->stop(100ms).has_value());
    EXPECT_EQ(m_sut->sent(), sent);
    EXPECT_FALSE(m_sut->wait_received(sent + 1, Clock::now() + 5s)) << "a stopped stream returns at once";
    const auto restart = m_sut->start();
    ASSERT_FALSE(restart.has_value());
    EXPECT_EQ(restart.error().code, HostErrc::InvalidArgument);
}

TEST_F(UdpStream_test, DestroyingARunningStreamStopsIt) {
    EchoServer echo;
    create(echo.port(), 1000, 0);
    ASSERT_TRUE(m_sut->start().has_value());
    ASSERT_TRUE(m_sut->wait_received(1, Clock::now() + 5s));
    m_sut.reset();  // joins both threads and closes the socket; a hang would time the test out
}

TEST_F(UdpStream_test, WaitReceivedGivesUpAtItsDeadline) {
    LoopbackSocket silent;
    create(silent.port, 1000, 0);
    ASSERT_TRUE(m_sut->start().has_value());
    const auto before = Clock::now();
    EXPECT_FALSE(m_sut->wait_received(1, before + 50ms));
    EXPECT_GE(Clock::now() - before, 50ms);
}

TEST_F(UdpStream_test, FailedSendsKeepTheirSeqAndCountAsLost) {
    // Broadcast without SO_BROADCAST: every send fails (EACCES).
    create(9, 10000, 5, 64, "255.255.255.255");
    ASSERT_TRUE(m_sut->start().has_value());
    ASSERT_TRUE(m_sut->wait_sending_done(Clock::now() + 5s));
    ASSERT_TRUE(m_sut->stop().has_value());
    EXPECT_EQ(m_sut->sent(), 5U);
    std::uint64_t errors = 0;
    for (const auto& [error, count] : m_sut->send_errors()) {
        errors += count;
    }
    EXPECT_EQ(errors, 5U);
    const StreamReport report = analyze();
    EXPECT_EQ(report.overall.lost, 5U);
    ASSERT_EQ(report.overall.loss_windows.size(), 1U);
    EXPECT_EQ(report.overall.loss_windows[0].count, 5U);
}

TEST_F(UdpStream_test, PayloadSmallerThanTheHeaderIsRefusedAndTheSocketClosed) {
    LoopbackSocket local;
    const int fd = local.release();
    auto stream = UdpStream::create(fd, {"127.0.0.1", 9, 1000, static_cast<std::int64_t>(stream_header_bytes) - 1, 0});
    ASSERT_FALSE(stream.has_value());
    EXPECT_EQ(stream.error().code, HostErrc::InvalidArgument);
    EXPECT_NE(stream.error().detail.find("payload size"), std::string::npos) << stream.error().detail;
    EXPECT_FALSE(fd_is_open(fd)) << "the stream owns the fd, on failure too";
}

TEST_F(UdpStream_test, BadArgumentsAreRefusedSayingWhat) {
    struct Case {
        UdpStreamSpec spec;
        const char* said;
    };
    const std::vector<Case> cases = {
        {{"127.0.0.1", 9, 0, 64, 0}, "rate"},      {{"127.0.0.1", 9, 1000, 70000, 0}, "payload size"},
        {{"127.0.0.1", 0, 1000, 64, 0}, "port"},   {{"not-an-address", 9, 1000, 64, 0}, "IPv4"},
        {{"127.0.0.1", 9, 1000, 64, -1}, "count"},
    };
    for (const Case& bad : cases) {
        LoopbackSocket local;
        auto stream = UdpStream::create(local.release(), bad.spec);
        ASSERT_FALSE(stream.has_value()) << bad.said;
        EXPECT_EQ(stream.error().code, HostErrc::InvalidArgument);
        EXPECT_NE(stream.error().detail.find(bad.said), std::string::npos) << stream.error().detail;
    }
    const int tcp = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    auto not_udp = UdpStream::create(tcp, {"127.0.0.1", 9, 1000, 64, 0});
    ASSERT_FALSE(not_udp.has_value());
    EXPECT_NE(not_udp.error().detail.find("SOCK_DGRAM"), std::string::npos) << not_udp.error().detail;

    LoopbackSocket connected;
    sockaddr_in peer{};
    peer.sin_family = AF_INET;
    peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    peer.sin_port = htons(9);
    ASSERT_EQ(::connect(connected.fd, reinterpret_cast<sockaddr*>(&peer), sizeof peer), 0);
    auto was_connected = UdpStream::create(connected.release(), {"127.0.0.1", 9, 1000, 64, 0});
    ASSERT_FALSE(was_connected.has_value());
    EXPECT_NE(was_connected.error().detail.find("connected"), std::string::npos) << was_connected.error().detail;
}
