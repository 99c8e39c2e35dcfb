#include "vnetct/host_agent/process.hpp"
#include "vnetct/host_agent/interruption.hpp"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>

using namespace vnetct::host_agent;
using namespace std::chrono_literals;

namespace {
Deadline in(std::chrono::milliseconds ms) { return std::chrono::steady_clock::now() + ms; }

// An empty file under a name nobody could know or take beforehand (mkstemp).
std::string temporary_file() {
    std::string pattern = testing::TempDir() + "/vnetct-process-test-XXXXXX";
    const int fd = mkstemp(pattern.data());
    if (fd >= 0) {
        close(fd);
    }
    return pattern;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}
}  // namespace

TEST(Process_test, ReportsExitCodeAndKeepsStderr) {
    const std::string err_path = temporary_file();
    auto m_sut = Process::spawn({{"sh", "-c", "echo oops >&2; exit 3"}, "/dev/null", err_path, {}, {}});
    ASSERT_TRUE(m_sut.has_value()) << m_sut.error().message();
    auto status = m_sut->wait(in(10s));
    ASSERT_TRUE(status.has_value());
    EXPECT_EQ(status->code, 3);
    EXPECT_EQ(status->signal, 0);
    EXPECT_EQ(read_file(err_path), "oops\n");
    unlink(err_path.c_str());
}

TEST(Process_test, MissingBinaryIsSpawnFailedNamingIt) {
    auto m_sut = Process::spawn({{"/nonexistent/qemu-system-x86_64"}, "/dev/null", "/dev/null", {}, {}});
    ASSERT_FALSE(m_sut.has_value());
    EXPECT_EQ(m_sut.error().code, HostErrc::SpawnFailed);
    EXPECT_NE(m_sut.error().detail.find("/nonexistent/qemu-system-x86_64"), std::string::npos);
}

TEST(Process_test, RunsInItsOwnProcessGroup) {
    auto m_sut = Process::spawn({{"sleep", "30"}, "/dev/null", "/dev/null", {}, {}});
    ASSERT_TRUE(m_sut.has_value());
    EXPECT_EQ(getpgid(m_sut->pid()), m_sut->pid());
    EXPECT_NE(getpgid(m_sut->pid()), getpgrp());
}

TEST(Process_test, WaitTimesOutWithinDeadline) {
    auto m_sut = Process::spawn({{"sleep", "30"}, "/dev/null", "/dev/null", {}, {}});
    ASSERT_TRUE(m_sut.has_value());
    const auto start = std::chrono::steady_clock::now();
    auto status = m_sut->wait(in(200ms));
    ASSERT_FALSE(status.has_value());
    EXPECT_EQ(status.error().code, HostErrc::Timeout);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST(Process_test, TerminateKillsTheWholeGroup) {
    // The shell ignores SIGTERM and has a grandchild: both must be gone.
    const std::string pid_path = temporary_file();
    auto m_sut = Process::spawn(
        {{"sh", "-c", "trap '' TERM; sleep 60 & echo $! > " + pid_path + "; wait"}, "/dev/null", "/dev/null", {}, {}});
    ASSERT_TRUE(m_sut.has_value());
    pid_t grandchild = 0;
    const auto deadline = in(10s);
    while (grandchild == 0 && std::chrono::steady_clock::now() < deadline) {
        std::istringstream(read_file(pid_path)) >> grandchild;
        if (grandchild == 0) {
            m_sut->wait(in(20ms));  // bounded wait, also reaps early exits
        }
    }
    ASSERT_GT(grandchild, 0);
    auto status = m_sut->terminate(300ms);
    ASSERT_TRUE(status.has_value());
    EXPECT_EQ(status->signal, SIGKILL);
    // The grandchild was re-parented; it must be dead (or a zombie of init).
    bool gone = false;
    for (int attempt = 0; attempt < 100 && !gone; ++attempt) {
        const std::string state = read_file("/proc/" + std::to_string(grandchild) + "/stat");
        gone = state.empty() || state.find(") Z") != std::string::npos;
        if (!gone) {
            Process::spawn({{"true"}, "/dev/null", "/dev/null", {}, {}})->wait(in(1s));
        }
    }
    EXPECT_TRUE(gone) << "grandchild " << grandchild << " survived terminate()";
    unlink(pid_path.c_str());
}

TEST(Process_test, RunCommandCollectsOutputAndChecksStatus) {
    auto ok = run_checked({"sh", "-c", "echo out; echo err >&2"}, in(10s));
    ASSERT_TRUE(ok.has_value()) << ok.error().message();
    EXPECT_NE(ok->find("out"), std::string::npos);
    EXPECT_NE(ok->find("err"), std::string::npos);
    auto bad = run_checked({"sh", "-c", "echo why >&2; exit 2"}, in(10s));
    ASSERT_FALSE(bad.has_value());
    EXPECT_EQ(bad.error().code, HostErrc::ProcessFailed);
    EXPECT_NE(bad.error().detail.find("why"), std::string::npos);
    EXPECT_NE(bad.error().detail.find("status 2"), std::string::npos);
    auto slow = run_command({"sleep", "30"}, in(200ms));
    ASSERT_FALSE(slow.has_value());
    EXPECT_EQ(slow.error().code, HostErrc::Timeout);
}

TEST(Process_test, PassedFdsBecomeThreeFourInTheChild) {
    // Two pipes: the child writes to its fd 3 and fd 4, which must be our write ends.
    int first[2];
    int second[2];
    ASSERT_EQ(pipe2(first, O_CLOEXEC), 0);
    ASSERT_EQ(pipe2(second, O_CLOEXEC), 0);
    auto m_sut = Process::spawn({{"sh", "-c", "echo three >&3; echo four >&4"}, "/dev/null", "/dev/null", {},
                                 {first[1], second[1]}});
    ASSERT_TRUE(m_sut.has_value()) << m_sut.error().message();
    close(first[1]);
    close(second[1]);
    auto status = m_sut->wait(in(10s));
    ASSERT_TRUE(status.has_value());
    EXPECT_EQ(status->code, 0);
    char buffer[16] = {};
    EXPECT_EQ(read(first[0], buffer, sizeof buffer), 6);
    EXPECT_STREQ(buffer, "three\n");
    char other[16] = {};
    EXPECT_EQ(read(second[0], other, sizeof other), 5);
    EXPECT_STREQ(other, "four\n");
    close(first[0]);
    close(second[0]);
}

TEST(Process_test, AClosedFdToPassIsRefusedBeforeSpawning) {
    auto m_sut = Process::spawn({{"true"}, "/dev/null", "/dev/null", {}, {987}});
    ASSERT_FALSE(m_sut.has_value());
    EXPECT_EQ(m_sut.error().code, HostErrc::InvalidArgument);
    EXPECT_NE(m_sut.error().message().find("987"), std::string::npos) << m_sut.error().message();
}

// A wait gives way to the thread's interruption check within a slice (Ctrl-C
// in the pybind11 layer), long before its deadline; a command it interrupts
// is killed with its group.
TEST(Process_test, WaitsGiveWayToTheInterruptionCheckWithinASlice) {
    auto m_sut = Process::spawn({{"sleep", "60"}, "/dev/null", "/dev/null", {}, {}});
    ASSERT_TRUE(m_sut.has_value());
    int asked = 0;
    const InterruptionCheck check([&asked] { return ++asked >= 2; });  // the second slice's end
    auto start = std::chrono::steady_clock::now();
    auto status = m_sut->wait(in(60s));
    ASSERT_FALSE(status.has_value());
    EXPECT_EQ(status.error().code, HostErrc::Interrupted) << status.error().message();
    EXPECT_LT(std::chrono::steady_clock::now() - start, 2 * wait_slice + 200ms);

    asked = 0;
    start = std::chrono::steady_clock::now();
    auto output = run_command({"sleep", "60"}, in(60s));
    ASSERT_FALSE(output.has_value());
    EXPECT_EQ(output.error().code, HostErrc::Interrupted) << output.error().message();
    EXPECT_LT(std::chrono::steady_clock::now() - start, 2 * wait_slice + 200ms);
}
