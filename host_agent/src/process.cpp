#include "vnetct/host_agent/process.hpp"

#include "vnetct/host_agent/interruption.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace vnetct::host_agent {
namespace {

int remaining_ms(Deadline deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

ExitStatus decode(int raw) {
    if (WIFSIGNALED(raw)) {
        return ExitStatus{0, WTERMSIG(raw)};
    }
    return ExitStatus{WEXITSTATUS(raw), 0};
}

// Everything the child needs, prepared before fork(): the parent may have
// other threads (the QMP readers), so the child must not allocate.
struct ChildPlan {
    std::vector<char*> argv;
    std::string netns_path;
    const char* stdout_path;
    const char* stderr_path;
    bool same_output;
    std::vector<int> pass_fds;
    int stdout_fd;
    int stderr_fd;
    std::vector<char*> env;  // empty: the parent's environment
};

// In the child, after fork: report "<step> <what>: errno N" and exit (the
// parent turns N into text: strerror may allocate).
[[noreturn]] void child_fail(int report_fd, const char* step, const char* what) {
    const int error = errno;
    char buffer[512];
    const int length = snprintf(buffer, sizeof buffer, "%s %s: errno %d", step, what, error);
    if (length > 0) {
        [[maybe_unused]] auto written = write(report_fd, buffer, static_cast<size_t>(length));
    }
    _exit(127);
}

[[noreturn]] void child_exec(const ChildPlan& plan, pid_t parent, int report_fd) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) {
        _exit(1);  // the parent died before PR_SET_PDEATHSIG took effect
    }
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, nullptr);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    if (!plan.netns_path.empty()) {
        const int ns = open(plan.netns_path.c_str(), O_RDONLY | O_CLOEXEC);
        if (ns < 0) {
            child_fail(report_fd, "open", plan.netns_path.c_str());
        }
        if (setns(ns, CLONE_NEWNET) != 0) {
            child_fail(report_fd, "setns", plan.netns_path.c_str());
        }
        close(ns);
    }
    const int in = open("/dev/null", O_RDONLY);
    const int out = plan.stdout_fd >= 0 ? fcntl(plan.stdout_fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1)
                                        : open(plan.stdout_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0) {
        child_fail(report_fd, "open", plan.stdout_path);
    }
    const int err = plan.stderr_fd >= 0 ? fcntl(plan.stderr_fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1)
                    : plan.same_output  ? dup(out)
                                        : open(plan.stderr_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (err < 0) {
        child_fail(report_fd, "open", plan.stderr_path);
    }
    dup2(in, STDIN_FILENO);
    dup2(out, STDOUT_FILENO);
    dup2(err, STDERR_FILENO);
    for (const int fd : {in, out, err}) {
        if (fd > STDERR_FILENO) {
            close(fd);
        }
    }
    // pass_fds[i] -> fd 3 + i: first lift every source (and the report pipe)
    // above that range, so that no dup2 overwrites a source not yet moved.
    const int passed = static_cast<int>(plan.pass_fds.size());
    if (passed > 0) {
        const int first_free = STDERR_FILENO + 1 + passed;
        report_fd = fcntl(report_fd, F_DUPFD_CLOEXEC, first_free);
        int lifted[64];
        if (passed > 64 || report_fd < 0) {
            child_fail(report_fd < 0 ? STDERR_FILENO : report_fd, "pass", "fds");
        }
        for (int i = 0; i < passed; ++i) {
            lifted[i] = fcntl(plan.pass_fds[static_cast<size_t>(i)], F_DUPFD_CLOEXEC, first_free);
            if (lifted[i] < 0) {
                child_fail(report_fd, "pass", "fd");
            }
        }
        for (int i = 0; i < passed; ++i) {
            if (dup2(lifted[i], STDERR_FILENO + 1 + i) < 0) {  // the copy is not close-on-exec
                child_fail(report_fd, "pass", "fd");
            }
            close(lifted[i]);
        }
    }
    if (plan.env.empty()) {
        execvp(plan.argv[0], plan.argv.data());
    } else {
        execvpe(plan.argv[0], plan.argv.data(), plan.env.data());
    }
    child_fail(report_fd, "exec", plan.argv[0]);
}

}  // namespace

std::string ExitStatus::describe() const {
    if (signal != 0) {
        return std::string("killed by signal ") + std::to_string(signal) + " (" + strsignal(signal) + ")";
    }
    return "exited with status " + std::to_string(code);
}

HostResult<Process> Process::spawn(const SpawnOptions& options) {
    if (options.argv.empty()) {
        return fail(HostErrc::InvalidArgument, "empty argv");
    }
    ChildPlan plan{{}, options.netns.empty() ? std::string() : "/run/netns/" + options.netns,
                   options.stdout_path.c_str(), options.stderr_path.c_str(),
                   options.stderr_path == options.stdout_path && options.stderr_fd < 0 && options.stdout_fd < 0,
                   options.pass_fds, options.stdout_fd, options.stderr_fd, {}};
    if (options.env) {
        for (const auto& entry : *options.env) {
            plan.env.push_back(const_cast<char*>(entry.c_str()));
        }
        plan.env.push_back(nullptr);
    }
    if (options.pass_fds.size() > 64) {
        return fail(HostErrc::InvalidArgument, "at most 64 fds can be passed");
    }
    for (const int fd : options.pass_fds) {
        if (fcntl(fd, F_GETFD) < 0) {
            return fail(HostErrc::InvalidArgument, "fd " + std::to_string(fd) + " to pass is not open");
        }
    }
    for (const auto& argument : options.argv) {
        plan.argv.push_back(const_cast<char*>(argument.c_str()));
    }
    plan.argv.push_back(nullptr);

    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) {
        return fail(HostErrc::SpawnFailed, std::string("pipe: ") + strerror(errno));
    }
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) {
        const int error = errno;
        close(report[0]);
        close(report[1]);
        return fail(HostErrc::SpawnFailed, std::string("fork: ") + strerror(error));
    }
    if (pid == 0) {
        close(report[0]);
        child_exec(plan, parent, report[1]);
    }
    setpgid(pid, pid);  // also in the parent, so the group exists before we use it
    close(report[1]);
    char message[512];
    ssize_t length;
    do {
        length = read(report[0], message, sizeof message - 1);
    } while (length < 0 && errno == EINTR);
    close(report[0]);
    const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    Process process(pid, pidfd);
    if (length > 0) {
        message[length] = '\0';
        process.kill_group_and_reap();
        std::string text = message;
        if (const auto at = text.rfind(": errno "); at != std::string::npos) {
            text = text.substr(0, at) + ": " + strerror(std::atoi(text.c_str() + at + 8));
        }
        return fail(HostErrc::SpawnFailed, text);
    }
    return process;
}

Process::Process(Process&& other) noexcept
    : m_pid(std::exchange(other.m_pid, -1)), m_pidfd(std::exchange(other.m_pidfd, -1)), m_status(other.m_status) {}

Process& Process::operator=(Process&& other) noexcept {
    if (this != &other) {
        kill_group_and_reap();
        m_pid = std::exchange(other.m_pid, -1);
        m_pidfd = std::exchange(other.m_pidfd, -1);
        m_status = other.m_status;
    }
    return *this;
}

Process::~Process() { kill_group_and_reap(); }

std::optional<ExitStatus> Process::poll() {
    if (m_status || m_pid <= 0) {
        return m_status;
    }
    // Look without reaping: while the leader is an unreaped zombie its pid (and
    // so its process group id) cannot be reused, so killing the group is safe.
    siginfo_t info{};
    if (waitid(P_PID, static_cast<id_t>(m_pid), &info, WEXITED | WNOWAIT | WNOHANG) != 0 || info.si_pid == 0) {
        return std::nullopt;
    }
    kill(-m_pid, SIGKILL);  // whatever else of its group lingers
    int raw = 0;
    if (waitpid(m_pid, &raw, 0) == m_pid) {
        m_status = decode(raw);
    }
    return m_status;
}

HostResult<ExitStatus> Process::wait(Deadline deadline) {
    for (;;) {
        if (auto status = poll()) {
            return *status;
        }
        const int timeout = remaining_ms(deadline);
        if (timeout == 0) {
            return fail(HostErrc::Timeout, "process " + std::to_string(m_pid) + " still running");
        }
        if (m_pidfd >= 0) {
            pollfd entry{m_pidfd, POLLIN, 0};
            if (::poll(&entry, 1, remaining_ms(slice_end(deadline))) == 0 && interruption_requested()) {
                return fail(HostErrc::Interrupted, "waiting for process " + std::to_string(m_pid));
            }  // else readable once the process has exited
        } else {
            // No pidfd (very old kernel): block until it exits.
            siginfo_t info{};
            waitid(P_PID, static_cast<id_t>(m_pid), &info, WEXITED | WNOWAIT);
        }
    }
}

HostResult<void> Process::signal(int number) {
    if (poll() || m_pid <= 0) {
        return fail(HostErrc::InvalidArgument, "process " + std::to_string(m_pid) + " has ended");
    }
    if (kill(-m_pid, number) != 0) {
        return fail(HostErrc::Io, "kill(-" + std::to_string(m_pid) + ", " + std::to_string(number) +
                                      "): " + strerror(errno));
    }
    return {};
}

HostResult<ExitStatus> Process::terminate(std::chrono::milliseconds grace) {
    if (!poll()) {
        kill(-m_pid, SIGTERM);
        auto ended = wait(std::chrono::steady_clock::now() + grace);
        if (!ended) {
            kill(-m_pid, SIGKILL);
            auto killed = wait(std::chrono::steady_clock::now() + std::chrono::seconds(10));
            if (!killed) {
                return killed;
            }
        }
    }
    return *m_status;
}

void Process::kill_group_and_reap() noexcept {
    if (m_pid > 0 && !m_status) {
        kill(-m_pid, SIGKILL);  // the leader is not reaped yet: the group id is still ours
        int raw = 0;
        if (waitpid(m_pid, &raw, 0) == m_pid) {
            m_status = decode(raw);
        }
    }
    if (m_pidfd >= 0) {
        close(m_pidfd);
        m_pidfd = -1;
    }
}

HostResult<CommandOutput> run_command(const std::vector<std::string>& argv, Deadline deadline) {
    if (argv.empty()) {
        return fail(HostErrc::InvalidArgument, "empty argv");
    }
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
        return fail(HostErrc::SpawnFailed, std::string("pipe: ") + strerror(errno));
    }
    const std::string output_path = "/dev/fd/" + std::to_string(pipe_fds[1]);
    // The child inherits pipe_fds[1] only through the /dev/fd path opened
    // before exec, so clear CLOEXEC on it for the duration of the spawn.
    fcntl(pipe_fds[1], F_SETFD, 0);
    auto process = Process::spawn(SpawnOptions{argv, output_path, output_path, {}, {}});
    close(pipe_fds[1]);
    if (!process) {
        close(pipe_fds[0]);
        return tl::unexpected(process.error());
    }
    std::string output;
    char buffer[4096];
    for (;;) {
        pollfd entry{pipe_fds[0], POLLIN, 0};
        const int timeout = remaining_ms(deadline);
        const int ready = timeout == 0 ? 0 : ::poll(&entry, 1, remaining_ms(slice_end(deadline)));
        if (ready < 0 && errno == EINTR) {
            continue;
        }
        if (ready == 0 && timeout > 0) {
            if (interruption_requested()) {
                close(pipe_fds[0]);
                return fail(HostErrc::Interrupted, "running '" + argv.front() + "'");  // the Process kills it
            }
            continue;
        }
        if (ready < 0) {
            close(pipe_fds[0]);
            return fail(HostErrc::Io, std::string("poll: ") + strerror(errno));
        }
        if (ready == 0) {
            close(pipe_fds[0]);
            return fail(HostErrc::Timeout, "'" + argv.front() + "' did not finish; output so far: " + output);
        }
        const ssize_t length = read(pipe_fds[0], buffer, sizeof buffer);
        if (length < 0 && errno == EINTR) {
            continue;
        }
        if (length <= 0) {
            break;
        }
        output.append(buffer, static_cast<size_t>(length));
    }
    close(pipe_fds[0]);
    auto status = process->wait(deadline);
    if (!status) {
        return tl::unexpected(status.error());
    }
    return CommandOutput{*status, std::move(output)};
}

HostResult<std::string> run_checked(const std::vector<std::string>& argv, Deadline deadline) {
    auto result = run_command(argv, deadline);
    if (!result) {
        return tl::unexpected(result.error());
    }
    if (result->status.code != 0 || result->status.signal != 0) {
        std::string line;
        for (const auto& argument : argv) {
            line += (line.empty() ? "" : " ") + argument;
        }
        return fail(HostErrc::ProcessFailed, "'" + line + "' " + result->status.describe() + ": " + result->output);
    }
    return std::move(result->output);
}

}  // namespace vnetct::host_agent
