#include "vnetct/livetap/realtime_window.hpp"

#include <cstdlib>
#include <cstring>

#include <sys/syscall.h>
#include <unistd.h>

namespace vnetct::livetap {

int handoff_cpu(HandOffSide side) {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) {
        return -1;
    }
    int found = -1;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (CPU_ISSET(cpu, &allowed)) {
            found = cpu;
            if (side == HandOffSide::Source) {
                break;
            }
        }
    }
    return found;
}

bool handoff_cpus_differ() { return handoff_cpu(HandOffSide::Source) != handoff_cpu(HandOffSide::Target); }

RealtimeWindow::RealtimeWindow(HandOffSide side) : m_tid(static_cast<pid_t>(syscall(SYS_gettid))) {
    const char* wanted = std::getenv("VNETCT_HANDOFF_REALTIME");
    const int cpu = handoff_cpu(side);
    if ((wanted != nullptr && std::strcmp(wanted, "0") == 0) || cpu < 0 ||
        sched_getaffinity(m_tid, sizeof m_cpus, &m_cpus) != 0) {
        return;
    }
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    m_pinned = sched_setaffinity(m_tid, sizeof one, &one) == 0;
}

bool RealtimeWindow::raise(int priority) {
    sched_param previous{};
    if (!m_pinned || m_raised || (m_policy = sched_getscheduler(m_tid)) < 0 || sched_getparam(m_tid, &previous) != 0) {
        return m_raised;
    }
    m_priority = previous.sched_priority;
    const sched_param raised{priority};
    m_raised = m_taken = sched_setscheduler(m_tid, SCHED_FIFO, &raised) == 0;  // else: not allowed, as it is
    return m_raised;
}

void RealtimeWindow::end() {
    if (m_raised) {
        const sched_param previous{m_priority};
        (void)sched_setscheduler(m_tid, m_policy, &previous);
        m_raised = false;
    }
    if (m_pinned) {
        (void)sched_setaffinity(m_tid, sizeof m_cpus, &m_cpus);
        m_pinned = false;
    }
}

}  // namespace vnetct::livetap
