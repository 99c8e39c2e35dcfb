// The reference backend as two processes: a source that owns the TAP and a
// target started with nothing but a socket to listen on, in a mount namespace
// where /dev/net/tun is /dev/null (LT-XFER-03: had it opened the device or
// tried TUNSETIFF, it would fail). The hand-off happens mid-stream at 10k pps
// and loses nothing (LT-DATA-01).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sys/syscall.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "netns_fixture.hpp"
#include "vnetct/host_agent/stream_analysis.hpp"
#include "vnetct/host_agent/topology.hpp"
#include "vnetct/host_agent/udp_stream.hpp"
#include "vnetct/livetap/handoff_stamps.hpp"
#include "vnetct/livetap/unique_fd.hpp"

using namespace vnetct::livetap;
using namespace std::chrono_literals;
using vnetct::livetap::test_support::TestNetns;
namespace host = vnetct::host_agent;

namespace {

// A directory for the test's sockets, made by mkdtemp (0700, a name nobody
// could take beforehand), removed with what is in it.
class SocketDir {
  public:
    SocketDir() {
        std::string pattern = "/tmp/vnetct-lt-XXXXXX";  // short: a socket path has 108 bytes
        if (mkdtemp(pattern.data()) != nullptr) {
            m_path = pattern;
        }
    }
    ~SocketDir() {
        if (!m_path.empty()) {
            std::error_code ignored;
            std::filesystem::remove_all(m_path, ignored);
        }
    }
    [[nodiscard]] std::string socket(const std::string& name) const { return m_path + "/" + name + ".sock"; }

  private:
    std::string m_path;
};

// A child process with its stdin and stdout on pipes; killed and reaped when
// the object goes.
class Child {
  public:
    Child(const std::vector<std::string>& args, bool hide_dev_net_tun) {
        int in[2];
        int out[2];
        if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
            ADD_FAILURE() << "pipe";
            return;
        }
        std::vector<std::string> argv_storage{LIVETAP_BACKEND_PATH};
        argv_storage.insert(argv_storage.end(), args.begin(), args.end());
        std::vector<char*> argv;
        for (auto& arg : argv_storage) {
            argv.push_back(arg.data());
        }
        argv.push_back(nullptr);
        m_pid = fork();
        if (m_pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            dup2(in[0], 0);
            dup2(out[1], 1);
            if (hide_dev_net_tun &&
                (unshare(CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
                 mount("/dev/null", "/dev/net/tun", nullptr, MS_BIND, nullptr) != 0)) {
                std::perror("hide /dev/net/tun");
                _exit(127);
            }
            execv(argv[0], argv.data());
            _exit(127);
        }
        close(in[0]);
        close(out[1]);
        m_in.reset(in[1]);
        m_out.reset(out[0]);
    }
    ~Child() {
        if (m_pid > 0) {
            kill(m_pid, SIGKILL);
            waitpid(m_pid, nullptr, 0);
        }
    }

    void send(const std::string& line) {
        const std::string text = line + "\n";
        ASSERT_EQ(write(m_in.get(), text.data(), text.size()), static_cast<ssize_t>(text.size()));
    }
    void close_input() { m_in.reset(); }

    // The next line the child prints, within `timeout`; "<timeout>" or "<eof>" otherwise.
    std::string line(std::chrono::milliseconds timeout = 5s) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            if (auto end = m_buffer.find('\n'); end != std::string::npos) {
                std::string line = m_buffer.substr(0, end);
                m_buffer.erase(0, end + 1);
                return line;
            }
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            pollfd entry{m_out.get(), POLLIN, 0};
            if (left.count() <= 0 || poll(&entry, 1, static_cast<int>(left.count())) <= 0) {
                return "<timeout> after '" + m_buffer + "'";
            }
            char chunk[512];
            const ssize_t got = read(m_out.get(), chunk, sizeof chunk);
            if (got <= 0) {
                return "<eof> after '" + m_buffer + "'";
            }
            m_buffer.append(chunk, static_cast<std::size_t>(got));
        }
    }

    // The exit code, waiting at most `timeout` (-1 on a timeout or a signal).
    int exit_code(std::chrono::milliseconds timeout = 5s) {
        pollfd entry{};
        const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, m_pid, 0));
        entry = {pidfd, POLLIN, 0};
        const bool ended = poll(&entry, 1, static_cast<int>(timeout.count())) == 1;
        close(pidfd);
        if (!ended) {
            return -1;
        }
        int status = 0;
        waitpid(m_pid, &status, 0);
        m_pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }

  private:
    pid_t m_pid = -1;
    UniqueFd m_in;
    UniqueFd m_out;
    std::string m_buffer;
};

bool starts_with(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }

// The value of the word "key=value" in a control line ("" if none).
std::string field(const std::string& line, const std::string& key) {
    const auto start = line.find(" " + key + "=");
    if (start == std::string::npos) {
        return "";
    }
    const auto value = start + key.size() + 2;
    return line.substr(value, line.find(' ', value) - value);
}

// The blackout's accounting problems of one hand-off, from the source's
// "committed" line and the target's "serving" line.
std::vector<std::string> accounting_problems(const std::string& committed, const std::string& serving) {
    const auto source = HandOffStamps::parse(field(committed, "stamps"));
    const auto target = HandOffStamps::parse(field(serving, "stamps"));
    if (!source || !target) {
        return {"unreadable stamps in '" + committed + "' or '" + serving + "'"};
    }
    return blackout_accounting_problems(*source, *target, std::stoll(field(committed, "stopped_reading_ns")),
                                        std::stoll(field(serving, "serving_ns")));
}

}  // namespace

TEST(BackendProcess_test, LT_XFER_03_LT_DATA_01_TwoProcessesHandOffMidStreamWithZeroLoss) {
    TestNetns netns;
    ASSERT_TRUE(netns.created());
    const SocketDir sockets;
    const std::string socket_path = sockets.socket("handoff");

    Child source({"source", "--netns", netns.name(), "--tap", "lt0", "--queues", "2", "--offloads",
                  std::to_string(TUN_F_CSUM)},
                 false);
    const std::string ready = source.line();
    ASSERT_TRUE(starts_with(ready, "ready name=lt0")) << ready;
    bool ok = false;
    netns.ip({"addr", "add", "198.18.0.1/24", "dev", "lt0"}, &ok);
    ASSERT_TRUE(ok);
    netns.ip({"link", "set", "lt0", "up"}, &ok);
    ASSERT_TRUE(ok);
    const int ifindex = netns.ifindex("lt0");

    Child target({"target", "--listen", socket_path}, true);
    const std::string listening = target.line();
    ASSERT_TRUE(starts_with(listening, "listening " + socket_path + " uid=")) << listening;

    auto socket = host::open_socket_in_netns(netns.name(), AF_INET, SOCK_DGRAM, 0);
    ASSERT_TRUE(socket.has_value());
    host::UdpStreamSpec spec;
    spec.address = "198.18.0.2";
    spec.port = 7;
    spec.rate_pps = 10000;
    spec.count = 6000;
    auto stream = host::UdpStream::create(*socket, spec);
    ASSERT_TRUE(stream.has_value());
    ASSERT_TRUE(stream->start().has_value());
    ASSERT_TRUE(stream->wait_received(2000, std::chrono::steady_clock::now() + 5s));

    source.send("handoff " + socket_path);
    const std::string committed = source.line();
    EXPECT_TRUE(starts_with(committed, "committed frames=")) << committed;
    const std::string serving = target.line();
    EXPECT_TRUE(starts_with(serving, "serving " + ready.substr(std::string("ready ").size()) + " serving_ns="))
        << "the target must serve exactly the state the source had";
    EXPECT_EQ(accounting_problems(committed, serving), std::vector<std::string>{})
        << "nothing but the Offer, the validation, the Accept and the Commit in the blackout";
    EXPECT_EQ(source.exit_code(), 0);

    ASSERT_TRUE(stream->wait_sending_done(std::chrono::steady_clock::now() + 5s));
    EXPECT_TRUE(stream->wait_received(6000, std::chrono::steady_clock::now() + 2s))
        << "echoed " << stream->received() << " of " << stream->sent();
    ASSERT_TRUE(stream->stop().has_value());
    auto report = host::analyze_stream(stream->sent_times(), stream->arrivals(), {}, INT64_MAX, spec.rate_pps);
    ASSERT_TRUE(report.has_value());
    EXPECT_EQ(report->overall.lost, 0U);
    EXPECT_EQ(report->overall.duplicates, 0U);
    EXPECT_EQ(netns.ifindex("lt0"), ifindex) << "the device outlived its source process";

    target.close_input();
    const std::string stopped = target.line();
    EXPECT_TRUE(starts_with(stopped, "stopped frames=")) << stopped;
    EXPECT_EQ(target.exit_code(), 0);
    EXPECT_EQ(netns.ifindex("lt0"), 0) << "the last fd closed: the non-persistent TAP is gone";
}

// The accounting check sees a blackout that waits for the target to wake up:
// a source seeded to stop reading before it connects (the order it once had).
TEST(BackendProcess_test, BlackoutAccountingNamesAWakeUpInsideTheWindow) {
    TestNetns netns;
    ASSERT_TRUE(netns.created());
    const SocketDir sockets;
    const std::string socket_path = sockets.socket("late");
    Child source({"source", "--netns", netns.name(), "--tap", "lt0", "--seed-fault", "stop-before-connect"}, false);
    ASSERT_TRUE(starts_with(source.line(), "ready "));
    Child target({"target", "--listen", socket_path}, true);
    ASSERT_TRUE(starts_with(target.line(), "listening " + socket_path));
    source.send("handoff " + socket_path);
    const std::string committed = source.line();
    ASSERT_TRUE(starts_with(committed, "committed frames=")) << committed;
    const std::string serving = target.line();
    ASSERT_TRUE(starts_with(serving, "serving ")) << serving;
    const auto problems = accounting_problems(committed, serving);
    for (const char* step : {"target_ready came", "accepted came", "nic_spawned came"}) {
        EXPECT_TRUE(std::any_of(problems.begin(), problems.end(),
                                [&](const std::string& problem) { return starts_with(problem, step); }))
            << step << " ... into the blackout: " << ::testing::PrintToString(problems);
    }
    EXPECT_EQ(source.exit_code(), 0);
    target.close_input();
    EXPECT_TRUE(starts_with(target.line(), "stopped "));
}

TEST(BackendProcess_test, LT_XFER_04_SourceResumesWhenNoTargetListens) {
    TestNetns netns;
    ASSERT_TRUE(netns.created());
    Child source({"source", "--netns", netns.name(), "--tap", "lt0"}, false);
    ASSERT_TRUE(starts_with(source.line(), "ready ")) ;
    const SocketDir sockets;
    source.send("handoff " + sockets.socket("nobody"));
    const std::string resumed = source.line();
    EXPECT_TRUE(starts_with(resumed, "resumed the peer closed the hand-off channel: connect")) << resumed;
    EXPECT_GT(netns.ifindex("lt0"), 0);
    source.close_input();
    EXPECT_EQ(source.exit_code(), 0);
}

TEST(BackendProcess_test, LT_CFG_02_TargetWithIncomingFdsRefusesEveryConflictingOption) {
    const SocketDir sockets;
    const std::string socket_path = sockets.socket("cfg02");
    Child target({"target", "--listen", socket_path, "--ifname", "tap7", "--vnet-hdr", "1", "--fd", "3"}, true);
    EXPECT_EQ(target.line(), "failed incoming-fds conflicts with another TAP option: incoming-fds with ifname, "
                             "vnet_hdr, fd");
    EXPECT_EQ(target.exit_code(), 1);
    EXPECT_NE(access(socket_path.c_str(), F_OK), 0) << "a refused target must not listen";
}

TEST(BackendProcess_test, LT_CFG_01_LT_CFG_03_SwitchOffMovesNoFdAndTheWaitingTargetFailsClearly) {
    TestNetns netns;
    ASSERT_TRUE(netns.created());
    const SocketDir sockets;
    const std::string socket_path = sockets.socket("cfg03");
    Child source({"source", "--netns", netns.name(), "--tap", "lt0", "--transfer-device", "0"}, false);
    ASSERT_TRUE(starts_with(source.line(), "ready "));
    Child target({"target", "--listen", socket_path}, true);
    ASSERT_TRUE(starts_with(target.line(), "listening " + socket_path));
    source.send("handoff unix:" + socket_path);
    EXPECT_EQ(source.line(), "untransferred the device's backend-transfer is off");
    EXPECT_EQ(target.line(), "failed the target waits for incoming fds the migration does not transfer: the "
                             "source migrates without its backend: the device's backend-transfer is off");
    EXPECT_EQ(target.exit_code(), 1);
    // The source kept its queues and serves on.
    source.send("counters");
    EXPECT_TRUE(starts_with(source.line(), "counters frames="));
    source.close_input();
    EXPECT_EQ(source.exit_code(), 0);
}

// A target whose source never connects gives up at its deadline, says so, and
// leaves no socket behind (it used to wait in accept4 for ever).
TEST(BackendProcess_test, TargetWithoutSourceGivesUpAtItsAcceptDeadline) {
    const SocketDir sockets;
    const std::string socket_path = sockets.socket("nobody-comes");
    const auto started = std::chrono::steady_clock::now();
    Child target({"target", "--listen", socket_path, "--accept-timeout-ms", "300"}, true);
    ASSERT_TRUE(starts_with(target.line(), "listening " + socket_path));
    EXPECT_EQ(target.line(), "failed accept: no source connected within 300 ms");
    EXPECT_EQ(target.exit_code(), 1);
    const auto waited = std::chrono::steady_clock::now() - started;
    EXPECT_GE(waited, 300ms);
    EXPECT_LT(waited, 3s) << "the deadline was not kept";
    EXPECT_NE(access(socket_path.c_str(), F_OK), 0) << "the socket outlived the target";
}

TEST(BackendProcess_test, LT_CFG_04_TcpChannelNeverTransfersFds) {
    TestNetns netns;
    ASSERT_TRUE(netns.created());
    Child source({"source", "--netns", netns.name(), "--tap", "lt0"}, false);
    ASSERT_TRUE(starts_with(source.line(), "ready "));
    source.send("handoff tcp:127.0.0.1:4444");
    EXPECT_EQ(source.line(), "untransferred the migration channel is not a unix socket");
    source.close_input();
    EXPECT_EQ(source.exit_code(), 0);
}
