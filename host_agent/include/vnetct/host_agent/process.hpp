// One owner for every child process. A Process is spawned in a process group of
// its own (so a terminal's Ctrl-C does not hit it and a whole group can be
// killed), optionally inside a network namespace, with stdout/stderr kept in
// files, and it is always reaped: the destructor kills the group if the owner
// did not terminate it. The child also dies with its parent (PR_SET_PDEATHSIG).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "vnetct/host_agent/errors.hpp"

namespace vnetct::host_agent {

using Deadline = std::chrono::steady_clock::time_point;

struct SpawnOptions {
    std::vector<std::string> argv;
    std::string stdout_path = "/dev/null";
    std::string stderr_path = "/dev/null";
    std::string netns;  // name under /run/netns; empty: the caller's namespace
    // Open fds the child inherits: pass_fds[i] becomes the child's fd 3 + i
    // (e.g. a TAP queue for `-netdev tap,fd=3`). The caller keeps its own.
    std::vector<int> pass_fds;
    // Open fds that become the child's stdout / stderr instead of the paths
    // (e.g. a pipe's write end, for output streamed back); -1: the paths.
    int stdout_fd = -1;
    int stderr_fd = -1;
    // The child's whole environment ("NAME=value" each); absent: the caller's.
    std::optional<std::vector<std::string>> env;
};

// How a process ended: exit code, or the signal that killed it.
struct ExitStatus {
    int code = 0;    // valid when signal == 0
    int signal = 0;  // non-zero when killed by a signal
    [[nodiscard]] std::string describe() const;
};

class Process {
  public:
    static HostResult<Process> spawn(const SpawnOptions& options);

    Process(Process&& other) noexcept;
    Process& operator=(Process&& other) noexcept;
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;
    ~Process();

    [[nodiscard]] pid_t pid() const { return m_pid; }
    // The process group id (equal to pid()).
    [[nodiscard]] pid_t pgid() const { return m_pid; }
    // Reaps without blocking; the exit status once the process has ended.
    [[nodiscard]] std::optional<ExitStatus> poll();
    // Waits until the process ends or the deadline passes (Timeout).
    HostResult<ExitStatus> wait(Deadline deadline);
    // Sends `number` to the process group; InvalidArgument once the process
    // has ended (and been reaped): its group id may belong to another now.
    HostResult<void> signal(int number);
    // A pidfd that becomes readable when the process ends (for poll loops), or
    // -1 when the kernel has none.
    [[nodiscard]] int pidfd() const { return m_pidfd; }
    // SIGTERM to the group, up to `grace` for it to end, then SIGKILL to the
    // group; always reaps. Returns how the process ended.
    HostResult<ExitStatus> terminate(std::chrono::milliseconds grace);

  private:
    explicit Process(pid_t pid, int pidfd) : m_pid(pid), m_pidfd(pidfd) {}
    void kill_group_and_reap() noexcept;

    pid_t m_pid = -1;
    int m_pidfd = -1;
    std::optional<ExitStatus> m_status;
};

struct CommandOutput {
    ExitStatus status;
    std::string output;  // stdout and stderr, interleaved
};

// Runs a short helper command (ip, ...) to completion with a deadline and
// returns its combined output. A non-zero exit is not an error here.
HostResult<CommandOutput> run_command(const std::vector<std::string>& argv, Deadline deadline);

// Same, but a non-zero exit is ProcessFailed naming the command and its output.
HostResult<std::string> run_checked(const std::vector<std::string>& argv, Deadline deadline);

}  // namespace vnetct::host_agent
