// The whole poll loop in a child process, talking over a pseudo-terminal the
// way it talks over virtio-serial in the guest. Read-only on the host: it only
// answers ping and report (no ip-config, no load-modules).
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <array>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "vnetct/guest_agent/agent.hpp"
#include "vnetct/guest_agent/clock.hpp"

namespace vnetct::guest_agent {
namespace {

using nlohmann::json;

class AgentLoop_test : public ::testing::Test {
protected:
    void SetUp() override {
        int replica = -1;
        std::array<char, 256> replica_path{};
        ASSERT_EQ(::openpty(&m_terminal, &replica, replica_path.data(), nullptr, nullptr), 0);
        termios raw{};
        ::tcgetattr(replica, &raw);
        ::cfmakeraw(&raw);
        ::tcsetattr(replica, TCSANOW, &raw);
        AgentOptions options;
        options.device = std::string(replica_path.data());
        m_sut = ::fork();
        ASSERT_GE(m_sut, 0);
        if (m_sut == 0) {
            ::close(m_terminal);
            ::_exit(run_agent(options));
        }
        ::close(replica);
    }

    void TearDown() override {
        if (m_sut > 0) {
            ::kill(m_sut, SIGKILL);
            ::waitpid(m_sut, nullptr, 0);
        }
        if (m_terminal >= 0) {
            ::close(m_terminal);
        }
    }

    // The next line from the agent, or null after `timeout_ms`.
    json next_line(int timeout_ms = 5000) {
        const std::int64_t deadline = monotonic_ns() + std::int64_t{timeout_ms} * 1'000'000;
        for (;;) {
            if (const auto newline = m_received.find('\n'); newline != std::string::npos) {
                const std::string line = m_received.substr(0, newline);
                m_received.erase(0, newline + 1);
                return json::parse(line);
            }
            const std::int64_t left_ms = (deadline - monotonic_ns()) / 1'000'000;
            pollfd readable{m_terminal, POLLIN, 0};
            if (left_ms <= 0 || ::poll(&readable, 1, static_cast<int>(left_ms)) != 1) {
                ADD_FAILURE() << "no line from the agent within " << timeout_ms << " ms; partial: " << m_received;
                return nullptr;
            }
            std::array<char, 65536> chunk{};
            const ssize_t count = ::read(m_terminal, chunk.data(), chunk.size());
            if (count <= 0) {
                ADD_FAILURE() << "agent side closed";
                return nullptr;
            }
            m_received.append(chunk.data(), static_cast<std::size_t>(count));
        }
    }

    // The reply to `request`, skipping any link events in between.
    json request(const std::string& request) {
        const std::string line = request + "\n";
        EXPECT_EQ(::write(m_terminal, line.data(), line.size()), static_cast<ssize_t>(line.size()));
        for (int i = 0; i < 100; ++i) {
            json message = next_line();
            if (message.is_null() || message.contains("id")) {
                return message;
            }
        }
        return nullptr;
    }

    int m_terminal = -1;
    pid_t m_sut = -1;
    std::string m_received;
};

TEST_F(AgentLoop_test, HelloPingReportAndCleanStopOnSigterm) {
    const json hello = next_line();
    ASSERT_FALSE(hello.is_null());
    EXPECT_EQ(hello.at("event"), "hello");
    EXPECT_EQ(hello.at("version"), 1);

    const json pong = request(R"({"id":1,"cmd":"ping"})");
    EXPECT_EQ(pong.at("id"), 1);
    EXPECT_EQ(pong.at("ok"), true);

    const json garbage = request(R"(not json)");
    EXPECT_TRUE(garbage.at("id").is_null());
    EXPECT_EQ(garbage.at("ok"), false);

    const json report = request(R"({"id":2,"cmd":"report"})");
    EXPECT_EQ(report.at("ok"), true);
    EXPECT_FALSE(report.at("result").at("netdevs").empty()) << "at least lo";

    ASSERT_EQ(::kill(m_sut, SIGTERM), 0);
    int status = 0;
    const std::int64_t deadline = monotonic_ns() + 5'000'000'000;
    pid_t reaped = 0;
    while ((reaped = ::waitpid(m_sut, &status, WNOHANG)) == 0 && monotonic_ns() < deadline) {
        pollfd none{-1, 0, 0};
        ::poll(&none, 1, 10);
    }
    ASSERT_EQ(reaped, m_sut) << "agent did not stop within 5 s of SIGTERM";
    m_sut = -1;
    EXPECT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace vnetct::guest_agent
