#include "vnetct/host_agent/qmp_interposer.hpp"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "qmp_interposer_session.hpp"
#include "vnetct/host_agent/qmp_fault_plan.hpp"
#include "vnetct/host_agent/transcript.hpp"

namespace vnetct::host_agent {

namespace {

using Json = nlohmann::json;

constexpr std::size_t read_chunk_size = 64 * 1024;
// After one side hung up, what is still queued for the other gets this long.
constexpr std::chrono::seconds final_flush_bound{1};

std::string errno_text(int error) { return std::strerror(error); }

// One end of the relay: its socket, the bytes read but not yet a whole line,
// and the bytes waiting to be written to it.
struct Side {
    int fd = -1;
    const char* who = "";
    std::string in;
    std::size_t scanned = 0;  // bytes of `in` known to hold no line end
    std::string out;
    bool hung_up = false;
};

// Writes what `side.out` holds as far as the socket takes it now. A peer that
// is gone (or any other write error) marks the side hung up.
void flush(Side& side) {
    while (!side.out.empty() && !side.hung_up) {
        const ssize_t written = ::send(side.fd, side.out.data(), side.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (written > 0) {
            side.out.erase(0, static_cast<std::size_t>(written));
        } else if (written < 0 && errno == EINTR) {
            continue;
        } else if (written < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        } else {
            side.hung_up = true;
            side.out.clear();
        }
    }
}

struct FileCloser {
    void operator()(std::FILE* file) const { std::fclose(file); }
};

}  // namespace

struct QmpInterposer::Shared {
    Shared(FaultPlan fault_plan, std::string listen, std::string upstream, std::size_t max_size,
           std::chrono::milliseconds timeout)
        : plan(std::move(fault_plan)),
          states(plan.rules.size()),
          listen_path(std::move(listen)),
          upstream_path(std::move(upstream)),
          max_message_size(max_size),
          upstream_timeout(timeout) {
        for (std::size_t i = 0; i < plan.rules.size(); ++i) {
            states[i].armed = !plan.rules[i].armed_by.has_value();
        }
    }
    Shared(const Shared&) = delete;
    Shared& operator=(const Shared&) = delete;
    ~Shared() {
        close_listener();
        if (wake_fd >= 0) {
            ::close(wake_fd);
        }
    }

    void close_listener() {
        if (listener >= 0) {
            ::close(listener);
            ::unlink(listen_path.c_str());
            listener = -1;
        }
    }

    HostResult<void> listen();
    // The thread: accepts clients one at a time until stopped.
    void serve();
    // Connects to QEMU for a client; -1 when it gave up (recorded) or was stopped.
    int connect_upstream();
    // Relays one client until either side hangs up; false once stopped.
    bool relay(int client_fd, int upstream_fd);
    // Reads what `side` has and hands its whole lines to `deliver`; a partial
    // line at the end of the stream goes to `other` as it is. Sets `reason`
    // when a line is over the limit.
    template <typename Deliver>
    void read_side(Side& side, Side& other, std::string& reason, Deliver&& deliver);
    // Gives `side` a bounded time to take what is queued for it; false once stopped.
    bool final_flush(Side& side);
    [[nodiscard]] bool stop_requested(int timeout_ms = 0) const;

    void record(const std::string& rule, std::string_view action, const Json& message, Json extra);
    void record_closed(const std::string& reason) { record("", "closed", Json(), {{"reason", reason}}); }

    const FaultPlan plan;
    std::vector<FaultRuleState> states;  // touched by the thread only
    const std::string listen_path;
    const std::string upstream_path;
    const std::size_t max_message_size;
    const std::chrono::milliseconds upstream_timeout;
    int listener = -1;
    int wake_fd = -1;  // eventfd: readable once stop() asks the thread to end
    std::thread thread;

    mutable std::mutex log_mutex;
    Json log = Json::array();
    std::unique_ptr<std::FILE, FileCloser> log_file;
};

HostResult<void> QmpInterposer::Shared::listen() {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (listen_path.empty() || listen_path.size() >= sizeof address.sun_path) {
        return fail(HostErrc::InvalidArgument, "listening socket path '" + listen_path +
                                                   "' is empty or longer than " +
                                                   std::to_string(sizeof address.sun_path - 1) + " bytes");
    }
    std::memcpy(address.sun_path, listen_path.data(), listen_path.size());
    struct stat existing {};
    if (::lstat(listen_path.c_str(), &existing) == 0 && S_ISSOCK(existing.st_mode)) {
        ::unlink(listen_path.c_str());  // a stale socket of an earlier run
    }
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return fail(HostErrc::Io, "socket: " + errno_text(errno));
    }
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 || ::listen(fd, 4) != 0) {
        const int error = errno;
        ::close(fd);
        return fail(HostErrc::Io, "listening on " + listen_path + ": " + errno_text(error));
    }
    listener = fd;
    wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd < 0) {
        return fail(HostErrc::Io, "eventfd: " + errno_text(errno));
    }
    return {};
}

bool QmpInterposer::Shared::stop_requested(int timeout_ms) const {
    pollfd entry{wake_fd, POLLIN, 0};
    return ::poll(&entry, 1, timeout_ms) > 0;
}

void QmpInterposer::Shared::record(const std::string& rule, std::string_view action, const Json& message,
                                   Json extra) {
    Json entry{{"host_ns", monotonic_now_ns()}, {"rule", rule}, {"action", action}, {"message", message}};
    for (auto& [key, value] : extra.items()) {
        entry[key] = std::move(value);
    }
    std::lock_guard lock(log_mutex);
    if (log_file) {
        const std::string line = entry.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
        std::fputs(line.c_str(), log_file.get());
        std::fflush(log_file.get());
    }
    log.push_back(std::move(entry));
}

void QmpInterposer::Shared::serve() {
    for (;;) {
        pollfd entries[2] = {{listener, POLLIN, 0}, {wake_fd, POLLIN, 0}};
        if (::poll(entries, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            record_closed("the interposer stopped serving: poll: " + errno_text(errno));
            return;
        }
        if (entries[1].revents != 0) {
            return;
        }
        const int client = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (client < 0) {
            continue;  // the client went away before it was accepted, or EINTR
        }
        const int upstream = connect_upstream();
        bool stopped = upstream < 0 && stop_requested();
        if (upstream >= 0) {
            stopped = !relay(client, upstream);
            ::close(upstream);
        }
        ::close(client);
        if (stopped) {
            return;
        }
    }
}

int QmpInterposer::Shared::connect_upstream() {
    auto fd = connect_unix_socket(upstream_path, Clock::now() + upstream_timeout, wake_fd);
    if (fd) {
        return *fd;
    }
    if (!stop_requested()) {
        record_closed("closed the client: QEMU's socket did not accept: " + fd.error().message());
    }
    return -1;
}

template <typename Deliver>
void QmpInterposer::Shared::read_side(Side& side, Side& other, std::string& reason, Deliver&& deliver) {
    const std::size_t old_size = side.in.size();
    side.in.resize(old_size + read_chunk_size);
    ssize_t got = -1;
    do {
        got = ::read(side.fd, side.in.data() + old_size, read_chunk_size);
    } while (got < 0 && errno == EINTR);
    const int error = errno;
    side.in.resize(old_size + static_cast<std::size_t>(got > 0 ? got : 0));
    if (got < 0 && (error == EAGAIN || error == EWOULDBLOCK)) {
        return;
    }
    if (got <= 0) {
        side.hung_up = true;
        other.out += side.in;  // a line cut short goes on as it is
        side.in.clear();
        return;
    }
    std::size_t line_start = 0;
    std::size_t newline = 0;
    while ((newline = side.in.find('\n', std::max(side.scanned, line_start))) != std::string::npos) {
        if (newline - line_start > max_message_size) {
            reason = "a line of " + std::to_string(newline - line_start) + " bytes from " + side.who +
                     " (limit " + std::to_string(max_message_size) + ")";
            return;
        }
        deliver(side.in.substr(line_start, newline + 1 - line_start));
        line_start = newline + 1;
    }
    side.in.erase(0, line_start);
    side.scanned = side.in.size();
    if (side.in.size() > max_message_size) {
        reason = "more than " + std::to_string(max_message_size) + " bytes without a line end from " + side.who;
    }
}

bool QmpInterposer::Shared::final_flush(Side& side) {
    const Deadline deadline = Clock::now() + final_flush_bound;
    flush(side);
    while (!side.out.empty() && !side.hung_up && Clock::now() < deadline) {
        pollfd entries[2] = {{side.fd, POLLOUT, 0}, {wake_fd, POLLIN, 0}};
        if (::poll(entries, 2, poll_timeout_ms(deadline)) < 0 && errno != EINTR) {
            return true;
        }
        if (entries[1].revents != 0) {
            return false;
        }
        flush(side);
    }
    return true;
}

bool QmpInterposer::Shared::relay(int client_fd, int upstream_fd) {
    InterposerSession session(plan, states,
                              [this](const std::string& rule, std::string_view action, const Json& message,
                                     Json extra) { record(rule, action, message, std::move(extra)); });
    Side client{client_fd, "the client", {}, 0, {}, false};
    Side upstream{upstream_fd, "QEMU", {}, 0, {}, false};
    // Reading from a side stops while the other side has a full message's
    // worth of bytes it has not taken yet.
    const auto events = [this](const Side& side, const Side& other) {
        return static_cast<short>((other.out.size() < max_message_size ? POLLIN : 0) |
                                  (side.out.empty() ? 0 : POLLOUT));
    };
    for (;;) {
        const auto due = session.next_due();
        pollfd entries[3] = {{wake_fd, POLLIN, 0},
                             {client.fd, events(client, upstream), 0},
                             {upstream.fd, events(upstream, client), 0}};
        if (::poll(entries, 3, due ? poll_timeout_ms(*due) : -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            record_closed("closed both sides: poll: " + errno_text(errno));
            return true;
        }
        if (entries[0].revents != 0) {
            return false;
        }
        std::string reason;
        if ((entries[1].revents & ~POLLOUT) != 0) {
            read_side(client, upstream, reason, [&session](const std::string& line) { session.from_client(line); });
        }
        if (reason.empty() && (entries[2].revents & ~POLLOUT) != 0) {
            read_side(upstream, client, reason, [&session](const std::string& line) { session.from_upstream(line); });
        }
        session.run_due(Clock::now());
        client.out += session.take_to_client();
        upstream.out += session.take_to_upstream();
        if (!reason.empty()) {
            // What came before the line over the limit still goes on.
            record_closed("closed both sides: " + reason);
            return final_flush(client) && final_flush(upstream);
        }
        flush(client);
        flush(upstream);
        if (client.hung_up || upstream.hung_up) {
            // What came before the hang-up still reaches the other side.
            Side& open = client.hung_up ? upstream : client;
            return open.hung_up || final_flush(open);
        }
    }
}

HostResult<QmpInterposer> QmpInterposer::start(const std::string& listen_path, const std::string& upstream_path,
                                               const nlohmann::json& plan, const std::string& log_path,
                                               std::size_t max_message_size,
                                               std::chrono::milliseconds upstream_timeout) {
    auto parsed = parse_fault_plan(plan);
    if (!parsed) {
        return tl::unexpected(parsed.error());
    }
    auto shared = std::make_unique<Shared>(std::move(*parsed), listen_path, upstream_path, max_message_size,
                                           upstream_timeout);
    if (!log_path.empty()) {
        shared->log_file.reset(std::fopen(log_path.c_str(), "ae"));
        if (!shared->log_file) {
            return fail(HostErrc::Io, "opening the interposer's log " + log_path + ": " + errno_text(errno));
        }
    }
    if (auto listening = shared->listen(); !listening) {
        return tl::unexpected(listening.error());
    }
    // The thread takes no signals: they go to threads that may act on them.
    sigset_t all;
    sigset_t previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    try {
        shared->thread = std::thread([state = shared.get()] { state->serve(); });
    } catch (const std::system_error& error) {
        pthread_sigmask(SIG_SETMASK, &previous, nullptr);
        return fail(HostErrc::Io, std::string("starting the interposer's thread: ") + error.what());
    }
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    return QmpInterposer(std::move(shared));
}

QmpInterposer::QmpInterposer(std::unique_ptr<Shared> shared) : m_shared(std::move(shared)) {}

QmpInterposer::QmpInterposer(QmpInterposer&& other) noexcept = default;

QmpInterposer& QmpInterposer::operator=(QmpInterposer&& other) noexcept {
    if (this != &other) {
        stop();
        m_shared = std::move(other.m_shared);
    }
    return *this;
}

QmpInterposer::~QmpInterposer() { stop(); }

void QmpInterposer::stop() {
    if (m_shared == nullptr) {
        return;
    }
    if (m_shared->thread.joinable()) {
        const std::uint64_t one = 1;
        (void)!::write(m_shared->wake_fd, &one, sizeof one);
        m_shared->thread.join();
    }
    m_shared->close_listener();
}

nlohmann::json QmpInterposer::actions() const {
    if (m_shared == nullptr) {
        return Json::array();
    }
    std::lock_guard lock(m_shared->log_mutex);
    return m_shared->log;
}

const std::string& QmpInterposer::listen_path() const {
    static const std::string none;
    return m_shared == nullptr ? none : m_shared->listen_path;
}

}  // namespace vnetct::host_agent
