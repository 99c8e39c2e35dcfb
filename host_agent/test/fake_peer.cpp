#include "fake_peer.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <filesystem>
#include <stdexcept>

#include "vnetct/host_agent/json_line_channel.hpp"

namespace vnetct::host_agent::testing {

namespace {

// No single step of a script may take longer than this.
constexpr int step_bound_ms = 10'000;
// finish() gives the script this long to reach a stall or its end.
constexpr std::chrono::seconds finish_bound{10};

}  // namespace

FakePeer::FakePeer() {
    std::string pattern = (std::filesystem::temp_directory_path() / "vnetct-peer-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
        throw std::runtime_error("mkdtemp: " + std::string(std::strerror(errno)));
    }
    m_dir = pattern;
    m_socket_path = m_dir + "/peer.sock";
    m_stop_fd = ::eventfd(0, EFD_CLOEXEC);
    if (m_stop_fd < 0) {
        throw std::runtime_error("eventfd: " + std::string(std::strerror(errno)));
    }
}

FakePeer::~FakePeer() {
    if (m_thread.joinable()) {
        const std::uint64_t one = 1;
        (void)!::write(m_stop_fd, &one, sizeof one);
        m_thread.join();
    }
    ::close(m_stop_fd);
    std::error_code ignored;
    std::filesystem::remove_all(m_dir, ignored);
}

FakePeer& FakePeer::send(const nlohmann::json& message) { return send_line(message.dump()); }

FakePeer& FakePeer::send_line(std::string text) { return send_raw(std::move(text) + "\n"); }

FakePeer& FakePeer::send_raw(std::string bytes) {
    m_script.push_back(Step{StepKind::Send, std::move(bytes), nullptr});
    return *this;
}

FakePeer& FakePeer::expect(nlohmann::json match) {
    m_script.push_back(Step{StepKind::Expect, {}, std::move(match)});
    return *this;
}

FakePeer& FakePeer::close() {
    m_script.push_back(Step{StepKind::Close, {}, nullptr});
    return *this;
}

FakePeer& FakePeer::stall() {
    m_script.push_back(Step{StepKind::Stall, {}, nullptr});
    return *this;
}

FakePeer& FakePeer::pause(std::chrono::milliseconds time) {
    m_script.push_back(Step{StepKind::Pause, {}, nullptr, time});
    return *this;
}

FakePeer& FakePeer::reaccept() {
    m_script.push_back(Step{StepKind::Reaccept, {}, nullptr});
    return *this;
}

void FakePeer::start(std::chrono::milliseconds listen_delay) {
    m_thread = std::thread([this, listen_delay] { run(listen_delay); });
}

std::vector<std::string> FakePeer::finish() {
    {
        std::unique_lock lock(m_mutex);
        if (!m_idle_changed.wait_for(lock, finish_bound, [this] { return m_idle; })) {
            m_problems.push_back("the script did not reach a stall or its end within " +
                                 std::to_string(finish_bound.count()) + " s");
        }
    }
    const std::uint64_t one = 1;
    (void)!::write(m_stop_fd, &one, sizeof one);
    if (m_thread.joinable()) {
        m_thread.join();
    }
    std::lock_guard lock(m_mutex);
    return m_problems;
}

bool FakePeer::wait_until_idle(std::chrono::milliseconds bound) {
    std::unique_lock lock(m_mutex);
    return m_idle_changed.wait_for(lock, bound, [this] { return m_idle; });
}

std::vector<std::string> FakePeer::received() const {
    std::lock_guard lock(m_mutex);
    return m_received;
}

void FakePeer::problem(std::string text) {
    std::lock_guard lock(m_mutex);
    m_problems.push_back(std::move(text));
}

void FakePeer::set_idle() {
    {
        std::lock_guard lock(m_mutex);
        m_idle = true;
    }
    m_idle_changed.notify_all();
}

bool FakePeer::stop_requested(int timeout_ms) const {
    pollfd entry{m_stop_fd, POLLIN, 0};
    return ::poll(&entry, 1, timeout_ms) > 0;
}

void FakePeer::run(std::chrono::milliseconds listen_delay) {
    if (listen_delay.count() > 0 && stop_requested(static_cast<int>(listen_delay.count()))) {
        set_idle();
        return;
    }
    const int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, m_socket_path.c_str(), sizeof address.sun_path - 1);
    if (listener < 0 || ::bind(listener, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(listener, 1) != 0) {
        problem("cannot listen on " + m_socket_path + ": " + std::strerror(errno));
        set_idle();
        return;
    }
    if (m_script.empty()) {
        set_idle();  // nothing to wait for: finish() need not wait for a client
    }
    pollfd entries[2] = {{listener, POLLIN, 0}, {m_stop_fd, POLLIN, 0}};
    int connection = -1;
    if (::poll(entries, 2, step_bound_ms) > 0 && (entries[0].revents & POLLIN) != 0) {
        connection = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    }
    if (connection < 0) {
        ::close(listener);
        if (!m_script.empty()) {
            problem("no client connected");
        }
        set_idle();
        return;
    }
    bool open = true;
    for (std::size_t i = 0; i < m_script.size(); ++i) {
        if (!open) {
            problem("step " + std::to_string(i) + " comes after close");
            break;
        }
        if (m_script[i].kind == StepKind::Close) {
            ::close(connection);
            open = false;
            continue;
        }
        if (m_script[i].kind == StepKind::Reaccept) {
            connection = next_client(listener, connection, i);
            if (connection < 0) {
                open = false;
                break;
            }
            continue;
        }
        if (!run_step(connection, m_script[i], i)) {
            break;
        }
    }
    ::close(listener);
    set_idle();
    if (open) {
        drain(connection);
        ::close(connection);
    }
}

int FakePeer::next_client(int listener, int connection, std::size_t number) {
    drain(connection);  // until the client hangs up (or stop)
    ::close(connection);
    m_pending.clear();
    pollfd entries[2] = {{listener, POLLIN, 0}, {m_stop_fd, POLLIN, 0}};
    if (::poll(entries, 2, step_bound_ms) > 0 && (entries[0].revents & POLLIN) != 0) {
        const int next = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
        if (next >= 0) {
            return next;
        }
    }
    if (!stop_requested(0)) {
        problem("step " + std::to_string(number) + ": no next client connected");
    }
    return -1;
}

bool FakePeer::run_step(int connection, const Step& step, std::size_t number) {
    const std::string where = "step " + std::to_string(number) + ": ";
    switch (step.kind) {
        case StepKind::Send: {
            std::size_t sent = 0;
            while (sent < step.bytes.size()) {
                const ssize_t written =
                    ::send(connection, step.bytes.data() + sent, step.bytes.size() - sent, MSG_NOSIGNAL);
                if (written < 0 && errno == EINTR) {
                    continue;
                }
                if (written < 0) {
                    problem(where + "send: " + std::strerror(errno));
                    return false;
                }
                sent += static_cast<std::size_t>(written);
            }
            return true;
        }
        case StepKind::Expect: {
            std::string line;
            std::string why;
            if (!read_line(connection, line, why)) {
                problem(where + "expected a line matching " + step.match.dump() + ", " + why);
                return false;
            }
            const nlohmann::json message = nlohmann::json::parse(line, nullptr, false);
            if (message.is_discarded() || !json_matches(message, step.match)) {
                problem(where + "expected a line matching " + step.match.dump() + ", got " + line);
                return false;
            }
            return true;
        }
        case StepKind::Stall:
            set_idle();
            drain(connection);
            return false;
        case StepKind::Pause:
            // Timed on purpose: the peer stays quiet while the client does
            // nothing either. finish() ends the pause early.
            return !stop_requested(static_cast<int>(step.time.count()));
        case StepKind::Close:
        case StepKind::Reaccept:
            return false;
    }
    return false;
}

bool FakePeer::read_line(int connection, std::string& line, std::string& why) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(step_bound_ms);
    for (;;) {
        const std::size_t newline = m_pending.find('\n');
        if (newline != std::string::npos) {
            line = m_pending.substr(0, newline);
            m_pending.erase(0, newline + 1);
            std::lock_guard lock(m_mutex);
            m_received.push_back(line);
            return true;
        }
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                                std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            why = "got nothing within " + std::to_string(step_bound_ms) + " ms";
            return false;
        }
        pollfd entries[2] = {{connection, POLLIN, 0}, {m_stop_fd, POLLIN, 0}};
        if (::poll(entries, 2, static_cast<int>(left.count()) + 1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            why = std::string("poll: ") + std::strerror(errno);
            return false;
        }
        if ((entries[1].revents & POLLIN) != 0) {
            why = "stopped while waiting";
            return false;
        }
        if (entries[0].revents == 0) {
            continue;
        }
        char chunk[4096];
        const ssize_t got = ::read(connection, chunk, sizeof chunk);
        if (got <= 0) {
            why = "the client hung up";
            return false;
        }
        m_pending.append(chunk, static_cast<std::size_t>(got));
    }
}

void FakePeer::drain(int connection) {
    for (;;) {
        pollfd entries[2] = {{connection, POLLIN, 0}, {m_stop_fd, POLLIN, 0}};
        if (::poll(entries, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            return;
        }
        if ((entries[1].revents & POLLIN) != 0) {
            return;
        }
        char chunk[4096];
        const ssize_t got = ::read(connection, chunk, sizeof chunk);
        if (got <= 0) {
            return;
        }
        m_pending.append(chunk, static_cast<std::size_t>(got));
        std::size_t newline = 0;
        while ((newline = m_pending.find('\n')) != std::string::npos) {
            std::lock_guard lock(m_mutex);
            m_received.push_back(m_pending.substr(0, newline));
            m_pending.erase(0, newline + 1);
        }
    }
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
    std::vector<nlohmann::json> lines;
    std::ifstream file(path);
    std::string line;
    while (std::getline(file, line)) {
        lines.push_back(nlohmann::json::parse(line));
    }
    return lines;
}

}  // namespace vnetct::host_agent::testing
