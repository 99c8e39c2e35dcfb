// The hand-off's real-time window (realtime_window.hpp): each side on its own
// CPU at SCHED_FIFO while the window lasts, everything as it was after it, and
// an unprivileged or switched-off backend left at normal priority.
#include "vnetct/livetap/realtime_window.hpp"

#include <gtest/gtest.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <future>
#include <optional>
#include <thread>

namespace vnetct::livetap {
namespace {

cpu_set_t allowed_cpus() {
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    EXPECT_EQ(sched_getaffinity(0, sizeof cpus, &cpus), 0);
    return cpus;
}

// Runs `body` on a thread of its own (the window changes the calling thread).
template <typename Body>
void on_a_thread(Body body) {
    std::thread thread(body);
    thread.join();
}

TEST(RealtimeWindow, SourceAndTargetTakeTheLowestAndHighestCpu) {
    const cpu_set_t cpus = allowed_cpus();
    int lowest = -1;
    int highest = -1;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (CPU_ISSET(cpu, &cpus)) {
            lowest = lowest < 0 ? cpu : lowest;
            highest = cpu;
        }
    }
    EXPECT_EQ(handoff_cpu(HandOffSide::Source), lowest);
    EXPECT_EQ(handoff_cpu(HandOffSide::Target), highest);
    EXPECT_EQ(handoff_cpus_differ(), lowest != highest);
    on_a_thread([lowest] {  // one CPU: both sides share it
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(lowest, &one);
        ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
        EXPECT_EQ(handoff_cpu(HandOffSide::Target), lowest);
        EXPECT_FALSE(handoff_cpus_differ());
    });
}

TEST(RealtimeWindow, RunsOnItsSidesCpuAtFifoAndPutsEverythingBack) {
    if (geteuid() != 0) {
        GTEST_SKIP() << "SCHED_FIFO needs CAP_SYS_NICE (root here)";
    }
    on_a_thread([] {
        const cpu_set_t before = allowed_cpus();
        const int target_cpu = handoff_cpu(HandOffSide::Target);
        RealtimeWindow window(HandOffSide::Target);
        EXPECT_EQ(sched_getcpu(), target_cpu);
        const cpu_set_t during = allowed_cpus();
        EXPECT_EQ(CPU_COUNT(&during), 1);
        EXPECT_EQ(sched_getscheduler(0), SCHED_OTHER) << "pinned, not raised yet";
        EXPECT_FALSE(window.taken());
        ASSERT_TRUE(window.raise());
        EXPECT_EQ(sched_getscheduler(0), SCHED_FIFO);
        EXPECT_TRUE(window.taken());
        window.end();
        EXPECT_EQ(sched_getscheduler(0), SCHED_OTHER);
        const cpu_set_t after = allowed_cpus();
        EXPECT_TRUE(CPU_EQUAL(&before, &after)) << "the thread's CPUs are put back";
        EXPECT_TRUE(window.taken()) << "a window that ended still says it was taken";
        window.end();  // twice: nothing more
        EXPECT_EQ(sched_getscheduler(0), SCHED_OTHER);
    });
}

TEST(RealtimeWindow, EndsFromAnotherThread) {
    if (geteuid() != 0) {
        GTEST_SKIP() << "SCHED_FIFO needs CAP_SYS_NICE (root here)";
    }
    // The target's reader raises it; the backend's main thread ends it once the reader polls.
    std::optional<RealtimeWindow> window;
    std::promise<void> raised;
    std::promise<void> ended;
    std::promise<int> policy_after;
    std::thread reader([&] {
        window.emplace(HandOffSide::Target);
        window->raise();
        raised.set_value();
        ended.get_future().wait();
        policy_after.set_value(sched_getscheduler(0));
    });
    raised.get_future().wait();
    EXPECT_TRUE(window->taken());
    window->end();
    ended.set_value();
    EXPECT_EQ(policy_after.get_future().get(), SCHED_OTHER);
    reader.join();
}

TEST(RealtimeWindow, AnUnprivilegedBackendStaysAtNormalPriority) {
    if (geteuid() != 0) {
        GTEST_SKIP() << "needs root to become an unprivileged user";
    }
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        const rlimit none{0, 0};
        if (setrlimit(RLIMIT_RTPRIO, &none) != 0 || setresgid(65534, 65534, 65534) != 0 ||
            setresuid(65534, 65534, 65534) != 0) {
            _exit(10);
        }
        RealtimeWindow window(HandOffSide::Source);
        const bool raised = window.raise();
        const int policy = sched_getscheduler(0);
        window.end();
        _exit(raised || window.taken() ? 11 : policy != SCHED_OTHER ? 12 : 0);
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "10: could not drop privileges; 11: raised anyway; 12: left non-normal";
}

TEST(RealtimeWindow, SwitchedOffByTheEnvironment) {
    on_a_thread([] {
        ASSERT_EQ(setenv("VNETCT_HANDOFF_REALTIME", "0", 1), 0);
        const cpu_set_t before = allowed_cpus();
        RealtimeWindow window(HandOffSide::Source);
        EXPECT_FALSE(window.raise());
        EXPECT_EQ(sched_getscheduler(0), SCHED_OTHER);
        const cpu_set_t during = allowed_cpus();
        EXPECT_TRUE(CPU_EQUAL(&before, &during)) << "not pinned either";
        unsetenv("VNETCT_HANDOFF_REALTIME");
    });
}

}  // namespace
}  // namespace vnetct::livetap
