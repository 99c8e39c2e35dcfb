// The daemons' (the guest agent's, the remote host agent's) way to stop: SIGTERM
// and SIGINT are blocked and arrive on a signalfd their poll loop watches;
// SIGPIPE is ignored (a peer gone is an error return, not a death).
#pragma once

#include <signal.h>
#include <sys/signalfd.h>

namespace vnetct {

// The signalfd (CLOEXEC, non-blocking) for SIGTERM and SIGINT, or -1 with errno set.
[[nodiscard]] inline int stop_signal_fd() {
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    sigprocmask(SIG_BLOCK, &stop_signals, nullptr);
    ::signal(SIGPIPE, SIG_IGN);
    return ::signalfd(-1, &stop_signals, SFD_CLOEXEC | SFD_NONBLOCK);
}

}  // namespace vnetct
