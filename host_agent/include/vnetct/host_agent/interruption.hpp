// Blocking calls of the host side (a client's request, wait, pump or connect,
// a process wait, a command's run) wait in slices of at most `wait_slice` and
// between slices ask the calling thread's interruption check whether to give
// up; then they fail with Interrupted. The pybind11 layer installs a check
// that runs Python's pending signal handlers (Ctrl-C); without a check nothing
// interrupts, and a call waits until its deadline.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>

namespace vnetct::host_agent {

inline constexpr std::chrono::milliseconds wait_slice{100};

// Installs `check` for the calling thread for its lifetime (the previous one
// comes back after). `check` returns true to interrupt the waiting call.
class InterruptionCheck {
  public:
    explicit InterruptionCheck(std::function<bool()> check);
    ~InterruptionCheck();
    InterruptionCheck(const InterruptionCheck&) = delete;
    InterruptionCheck& operator=(const InterruptionCheck&) = delete;

  private:
    std::function<bool()> m_previous;
};

// Asks the calling thread's check (false without one).
[[nodiscard]] bool interruption_requested();

// The end of the next slice of a wait until `deadline`.
[[nodiscard]] inline std::chrono::steady_clock::time_point slice_end(std::chrono::steady_clock::time_point deadline) {
    return std::min(deadline, std::chrono::steady_clock::now() + wait_slice);
}

}  // namespace vnetct::host_agent
