// The hand-off's blackout at real-time priority, each side on a CPU of its
// own. A thread inside the window (the source from its stop to its Commit,
// the target's reader from its Ready to its first poll) runs SCHED_FIFO on
// its side's CPU (the source the lowest the process may use, the target the
// highest), where it spins for the peer's next message (channel.hpp):
// - no message then needs a wake-up (across CPUs an inter-processor
//   interrupt) nor a switch between the two processes on one CPU, each
//   30-90 us in this machine's VM (the hop breakdowns: 222-232 us median
//   with both sides on one CPU, against the bare steps' ~100 us);
// - neither the traffic nor the guests sharing the cores take the CPU from
//   them for a scheduler slice meanwhile.
// With one CPU both sides share it: two FIFO threads of one priority take
// turns at sched_yield, and the target sleeps until the Offer (a FIFO thread
// spinning there would keep the source from running).
//
// The source moves to its CPU before it connects, so that the target's spin
// on the other CPU cannot hold up its wake-up for the Ready; it raises its
// priority at the stop. Taken only for the window (at most a spin's length, handoff_spin, between
// messages) and only where the process may (CAP_SYS_NICE or RLIMIT_RTPRIO):
// an unprivileged backend runs the same hand-off at normal priority. Whether
// it was taken is reported with the stamps ("realtime=1|0"), so a figure says
// how it was obtained. VNETCT_HANDOFF_REALTIME=0 leaves it out (to compare).
#pragma once

#include <sched.h>
#include <sys/types.h>

namespace vnetct::livetap {

enum class HandOffSide { Source, Target };

// The CPU `side` runs its window on: the lowest (source) or highest (target) the calling thread may use.
[[nodiscard]] int handoff_cpu(HandOffSide side);
// Whether the two sides' CPUs differ (so the target may spin for the Offer).
[[nodiscard]] bool handoff_cpus_differ();

class RealtimeWindow {
  public:
    // Moves the calling thread to its side's CPU (at its own priority).
    explicit RealtimeWindow(HandOffSide side);
    ~RealtimeWindow() { end(); }
    RealtimeWindow(const RealtimeWindow&) = delete;
    RealtimeWindow& operator=(const RealtimeWindow&) = delete;

    // SCHED_FIFO `priority` from now on, if it could be pinned and may; whether it is.
    bool raise(int priority = 1);
    [[nodiscard]] bool taken() const { return m_taken; }  // raised at some point (still true after end())
    // Back to the thread's policy and CPUs before the window (callable from any thread).
    void end();

  private:
    pid_t m_tid = 0;
    int m_policy = 0;
    int m_priority = 0;
    cpu_set_t m_cpus{};
    bool m_pinned = false;
    bool m_raised = false;
    bool m_taken = false;
};

}  // namespace vnetct::livetap
