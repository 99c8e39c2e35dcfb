#include "vnetct/host_agent/json_line_channel.hpp"

#include "vnetct/host_agent/interruption.hpp"
#include "vnetct/host_agent/line_framing.hpp"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>

namespace vnetct::host_agent {

using HostError = Error<HostErrc>;

namespace {

constexpr std::size_t read_chunk_size = 64 * 1024;
constexpr std::chrono::milliseconds first_connect_backoff{2};
constexpr std::chrono::milliseconds max_connect_backoff{50};

std::string errno_text(int error) { return std::strerror(error); }

// Waits for `events` on `fd` until `deadline`, in interruptible slices.
// Returns the revents, 0 on timeout.
HostResult<short> wait_for(int fd, short events, Deadline deadline) {
    for (;;) {
        pollfd entry{fd, events, 0};
        const int ready = ::poll(&entry, 1, poll_timeout_ms(slice_end(deadline)));
        if (ready > 0) {
            return entry.revents;
        }
        if (ready == 0) {
            if (Clock::now() >= deadline) {
                return short{0};
            }
            if (interruption_requested()) {
                return fail(HostErrc::Interrupted, "waiting on " + std::to_string(fd));
            }
            continue;
        }
        if (errno != EINTR) {
            return fail(HostErrc::Io, "poll: " + errno_text(errno));
        }
    }
}

std::string dump(const nlohmann::json& message) {
    return message.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

bool nests_deeper_than(std::string_view text, std::size_t limit) {
    std::size_t depth = 0;
    bool in_string = false;
    bool escaped = false;
    for (const char c : text) {
        if (in_string) {
            if (escaped) {
                escaped = false;
            } else if (c == '\\') {
                escaped = true;
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > limit) {
                return true;
            }
        } else if ((c == ']' || c == '}') && depth > 0) {
            --depth;
        }
    }
    return false;
}

int poll_timeout_ms(Deadline deadline) {
    const auto left = deadline - Clock::now();
    if (left <= Clock::duration::zero()) {
        return 0;
    }
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    return ms > 1'000'000 ? 1'000'000 : static_cast<int>(ms);
}

HostResult<int> connect_unix_socket(const std::string& path, Deadline deadline, int wake_fd) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof address.sun_path) {
        return fail(HostErrc::ConnectFailed,
                    "socket path '" + path + "' is empty or longer than " +
                        std::to_string(sizeof address.sun_path - 1) + " bytes");
    }
    std::memcpy(address.sun_path, path.data(), path.size());

    const Deadline start = Clock::now();
    auto backoff = first_connect_backoff;
    for (;;) {
        const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
            return fail(HostErrc::ConnectFailed, "socket: " + errno_text(errno));
        }
        if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0) {
            return fd;
        }
        const int error = errno;
        ::close(fd);
        // Not there yet (QEMU creates its socket a moment after start), or the
        // listener's backlog is full: try again.
        const bool retry = error == ENOENT || error == ECONNREFUSED || error == EAGAIN || error == EINTR;
        if (!retry) {
            return fail(HostErrc::ConnectFailed, path + ": " + errno_text(error));
        }
        if (Clock::now() >= deadline) {
            const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - start).count();
            return fail(HostErrc::Timeout, "connecting to " + path + " for " + std::to_string(waited) +
                                               " ms; last error: " + errno_text(error));
        }
        if (interruption_requested()) {
            return fail(HostErrc::Interrupted, "connecting to " + path);
        }
        const Deadline retry_at = std::min(deadline, Clock::now() + backoff);
        pollfd wake{wake_fd, POLLIN, 0};
        int ready = 0;
        while ((ready = ::poll(&wake, wake_fd >= 0 ? 1 : 0, poll_timeout_ms(retry_at))) < 0 && errno == EINTR &&
               Clock::now() < retry_at) {
        }
        if (ready > 0) {
            return fail(HostErrc::Closed, "stopped while connecting to " + path);
        }
        backoff = std::min(backoff * 2, max_connect_backoff);
    }
}

HostResult<JsonLineChannel> JsonLineChannel::connect(const std::string& path, Deadline deadline,
                                                     std::size_t max_message_size, std::size_t max_queued) {
    auto fd = connect_unix_socket(path, deadline);
    if (!fd) {
        return tl::unexpected(fd.error());
    }
    return start_reader(*fd, path, max_message_size, max_queued);
}

struct JsonLineChannel::Shared {
    Shared(int socket_fd, int wake_up_fd, std::string socket_path, std::size_t max_size, std::size_t queue_bound)
        : fd(socket_fd),
          wake_fd(wake_up_fd),
          path(std::move(socket_path)),
          max_message_size(max_size),
          max_queued(queue_bound) {}
    Shared(const Shared&) = delete;
    Shared& operator=(const Shared&) = delete;
    ~Shared() {
        if (reader.joinable()) {
            const std::uint64_t one = 1;
            (void)!::write(wake_fd, &one, sizeof one);
            reader.join();
        }
        ::close(wake_fd);
        ::close(fd);
    }

    // The reader thread: until stopped, the peer hangs up, framing is lost or
    // reading fails.
    void read_loop();
    // Takes the complete lines out of `buffer` (bytes before `scanned` hold no
    // line end); false once framing is lost.
    bool take_lines(std::string& buffer, std::size_t scanned, std::int64_t arrival_ns);
    // Records and queues what arrived; with `end`, the reader stops after it
    // and every later receive() gets `end` (kept as `after_end`). Past the
    // queue's bounds the rest is dropped and `end` becomes Flooded. False
    // when the reader must stop.
    bool deliver(std::vector<Arrival> arrivals, std::optional<HostError> end = std::nullopt);

    // Constant while the reader runs.
    const int fd;
    const int wake_fd;  // eventfd: readable once the reader must stop
    const std::string path;
    const std::size_t max_message_size;
    const std::size_t max_queued;

    std::thread reader;  // touched by the owning channel only

    std::atomic<bool> peer_closed{false};

    // Lock order: transcript_mutex before queue_mutex.
    std::mutex transcript_mutex;
    Transcript transcript;

    std::mutex queue_mutex;
    std::condition_variable queue_changed;
    std::deque<Arrival> queue;
    std::size_t queued_bytes = 0;  // sum of the queued arrivals' bytes
    std::optional<HostError> after_end;  // set once the reader has stopped
};

void JsonLineChannel::Shared::read_loop() {
    std::string buffer;
    for (;;) {
        pollfd entries[2] = {{fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
        // No timeout: the destructor's wake-up ends this wait.
        if (::poll(entries, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            deliver({}, HostError{HostErrc::Io, "reading from " + path + " stopped: poll: " + errno_text(errno)});
            return;
        }
        if (entries[1].revents != 0) {
            return;
        }
        if (entries[0].revents == 0) {
            continue;
        }
        const std::size_t old_size = buffer.size();
        buffer.resize(old_size + read_chunk_size);
        ssize_t got = -1;
        do {
            got = ::read(fd, buffer.data() + old_size, read_chunk_size);
        } while (got < 0 && errno == EINTR);
        const int error = errno;
        const std::int64_t arrival_ns = monotonic_now_ns();
        buffer.resize(old_size + static_cast<std::size_t>(got > 0 ? got : 0));
        if (got > 0) {
            if (!take_lines(buffer, old_size, arrival_ns)) {
                return;
            }
            continue;
        }
        if (got < 0 && (error == EAGAIN || error == EWOULDBLOCK)) {
            continue;
        }
        if (got < 0 && error != ECONNRESET) {
            deliver({}, HostError{HostErrc::Io, "reading from " + path + " stopped: " + errno_text(error)});
            return;
        }
        const HostError hung_up{HostErrc::Closed, path + " hung up"};
        if (is_blank_text(buffer)) {
            std::vector<Arrival> end;
            end.push_back(Arrival{fail(HostErrc::Closed, path + " hung up between messages"), arrival_ns, {}});
            deliver(std::move(end), hung_up);
            return;
        }
        std::vector<Arrival> end;
        end.push_back(Arrival{fail(HostErrc::Closed, path + " hung up in the middle of a message: " + quote_text(buffer)),
                              arrival_ns, buffer});
        deliver(std::move(end), hung_up);
        return;
    }
}

bool JsonLineChannel::Shared::take_lines(std::string& buffer, std::size_t scanned, std::int64_t arrival_ns) {
    FramedLines framed = host_agent::take_lines(buffer, scanned, max_message_size, path, arrival_ns);
    if (framed.lost_framing) {
        deliver(std::move(framed.arrivals), std::move(framed.lost_framing));
        return false;
    }
    if (!framed.arrivals.empty()) {
        return deliver(std::move(framed.arrivals));
    }
    return true;
}

bool JsonLineChannel::Shared::deliver(std::vector<Arrival> arrivals, std::optional<HostError> end) {
    bool stopping = false;
    std::lock_guard transcript_lock(transcript_mutex);
    {
        std::lock_guard queue_lock(queue_mutex);
        std::size_t taken = 0;
        for (; taken < arrivals.size(); ++taken) {
            if (queue.size() + taken >= max_queued || queued_bytes + arrivals[taken].bytes > 2 * max_message_size) {
                end = HostError{HostErrc::Flooded,
                                path + " sent more than " + std::to_string(max_queued) + " lines or " +
                                    std::to_string(2 * max_message_size) + " bytes that were not received (" +
                                    std::to_string(queue.size() + taken) + " lines, " + std::to_string(queued_bytes) +
                                    " bytes waiting); the reader stopped, later lines are lost"};
                break;
            }
            queued_bytes += arrivals[taken].bytes;
        }
        stopping = end.has_value();
        arrivals.resize(taken);
        record_arrivals(transcript, arrivals);
        if (end && end->code == HostErrc::Flooded) {
            transcript.note(end->detail);
        }
        for (Arrival& arrival : arrivals) {
            queue.push_back(std::move(arrival));
        }
        if (end) {
            // Under the lock, with the last arrival: a receive() that finds
            // the peer closed finds the reason queued too.
            if (end->code == HostErrc::Closed) {
                peer_closed = true;
            }
            after_end = std::move(end);
        }
    }
    queue_changed.notify_all();
    return !stopping;
}

HostResult<JsonLineChannel> JsonLineChannel::start_reader(int fd, std::string path, std::size_t max_message_size,
                                                          std::size_t max_queued) {
    const int wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd < 0) {
        const int error = errno;
        ::close(fd);
        return fail(HostErrc::ConnectFailed, "eventfd: " + errno_text(error));
    }
    auto shared = std::make_unique<Shared>(fd, wake_fd, std::move(path), max_message_size, max_queued);
    // The reader takes no signals: they go to threads that may act on them.
    sigset_t all;
    sigset_t previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    try {
        shared->reader = std::thread([state = shared.get()] { state->read_loop(); });
    } catch (const std::system_error& error) {
        pthread_sigmask(SIG_SETMASK, &previous, nullptr);
        return fail(HostErrc::ConnectFailed, "starting the reader of " + shared->path + ": " + error.what());
    }
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    return JsonLineChannel(std::move(shared));
}

JsonLineChannel::JsonLineChannel(std::unique_ptr<Shared> shared) : m_shared(std::move(shared)) {}

JsonLineChannel::JsonLineChannel(JsonLineChannel&& other) noexcept = default;

JsonLineChannel& JsonLineChannel::operator=(JsonLineChannel&& other) noexcept = default;

JsonLineChannel::~JsonLineChannel() = default;

bool JsonLineChannel::closed() const { return m_shared == nullptr || m_shared->peer_closed; }

const std::string& JsonLineChannel::path() const {
    static const std::string none;
    return m_shared == nullptr ? none : m_shared->path;
}

void JsonLineChannel::set_transcript(Transcript transcript) {
    if (m_shared == nullptr) {
        return;
    }
    std::lock_guard transcript_lock(m_shared->transcript_mutex);
    m_shared->transcript = std::move(transcript);
    std::lock_guard queue_lock(m_shared->queue_mutex);
    record_arrivals(m_shared->transcript, m_shared->queue);
}

void JsonLineChannel::note(std::string_view text) {
    if (m_shared == nullptr) {
        return;
    }
    std::lock_guard lock(m_shared->transcript_mutex);
    m_shared->transcript.note(text);
}

HostResult<void> JsonLineChannel::send(const nlohmann::json& message) {
    return send(message, Clock::now() + default_send_timeout);
}

HostResult<void> JsonLineChannel::send(const nlohmann::json& message, Deadline deadline) {
    if (closed()) {
        return fail(HostErrc::Closed, "sending to " + path() + " after the peer hung up");
    }
    Shared& shared = *m_shared;
    std::string line = dump(message);
    {
        std::lock_guard lock(shared.transcript_mutex);
        shared.transcript.record(TranscriptDirection::Out, message);
    }
    line += '\n';
    std::size_t sent = 0;
    while (sent < line.size()) {
        const ssize_t written = ::send(shared.fd, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
        if (written >= 0) {
            sent += static_cast<std::size_t>(written);
            continue;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EPIPE || errno == ECONNRESET) {
            const int error = errno;
            // receive() still gets what came before the hang-up: the reader
            // reads on to the end of the stream.
            shared.peer_closed = true;
            return fail(HostErrc::Closed, "sending to " + shared.path + ": " + errno_text(error));
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            return fail(HostErrc::Io, "sending to " + shared.path + ": " + errno_text(errno));
        }
        auto ready = wait_for(shared.fd, POLLOUT, deadline);
        if (!ready) {
            return tl::unexpected(ready.error());
        }
        if (*ready == 0) {
            return fail(HostErrc::Timeout, "the peer at " + shared.path + " took " + std::to_string(sent) + " of " +
                                               std::to_string(line.size()) + " bytes before the deadline");
        }
    }
    return {};
}

HostResult<nlohmann::json> JsonLineChannel::receive(Deadline deadline) {
    if (m_shared == nullptr) {
        return fail(HostErrc::Closed, "receiving on a channel that was moved from");
    }
    Shared& shared = *m_shared;
    std::unique_lock lock(shared.queue_mutex);
    const auto ready = [&shared] { return !shared.queue.empty() || shared.after_end.has_value(); };
    while (!shared.queue_changed.wait_until(lock, slice_end(deadline), ready)) {
        if (Clock::now() >= deadline) {
            return fail(HostErrc::Timeout, "no complete message from " + shared.path);
        }
        lock.unlock();  // the check may run Python's signal handlers: not while the reader waits on the queue
        const bool interrupted = interruption_requested();
        lock.lock();
        if (interrupted) {
            return fail(HostErrc::Interrupted, "waiting for a message from " + shared.path);
        }
    }
    if (shared.queue.empty()) {
        return tl::unexpected(*shared.after_end);  // the reader has stopped
    }
    Arrival arrival = std::move(shared.queue.front());
    shared.queue.pop_front();
    shared.queued_bytes -= arrival.bytes;
    lock.unlock();
    if (arrival.message || arrival.message.error().code == HostErrc::Malformed) {
        m_last_arrival_ns = arrival.arrival_ns;
        m_last_line_bytes = arrival.bytes;
    }
    return std::move(arrival.message);
}

bool json_matches(const nlohmann::json& data, const nlohmann::json& match) {
    if (match.is_null()) {
        return true;
    }
    if (!match.is_object() || !data.is_object()) {
        return data == match;
    }
    for (const auto& [key, value] : match.items()) {
        const auto found = data.find(key);
        if (found == data.end() || *found != value) {
            return false;
        }
    }
    return true;
}

std::string describe_events(const std::vector<std::string>& names, const std::vector<const nlohmann::json*>& data,
                            std::string_view highlighted) {
    constexpr std::size_t shown_limit = 40;
    if (names.empty()) {
        return "none";
    }
    std::string text;
    std::size_t shown = 0;
    for (std::size_t i = 0; i < names.size();) {
        if (shown == shown_limit) {
            text += ", ... (" + std::to_string(names.size() - i) + " more)";
            break;
        }
        std::string entry = names[i];
        std::size_t next = i + 1;
        if (names[i] == highlighted) {
            entry += quote_text(dump(*data[i]));
        } else {
            while (next < names.size() && names[next] == names[i]) {
                ++next;
            }
            if (next - i > 1) {
                entry += " x" + std::to_string(next - i);
            }
        }
        text += (text.empty() ? "" : ", ") + entry;
        ++shown;
        i = next;
    }
    return text;
}

std::string brief(const nlohmann::json& message) {
    constexpr std::size_t limit = 200;
    std::string text = message.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (text.size() > limit) {
        text = text.substr(0, limit) + "...";
    }
    return text;
}

HostResult<ReceivedMessage> classify_message(nlohmann::json message) {
    if (!message.is_object()) {
        return fail(HostErrc::Protocol, "not a JSON object: " + brief(message));
    }
    const auto event = message.find("event");
    if (event == message.end()) {
        return ReceivedMessage{std::move(message), std::nullopt};
    }
    if (!event->is_string()) {
        return fail(HostErrc::Protocol, "event name is not a string: " + brief(message));
    }
    std::string name = event->get<std::string>();
    return ReceivedMessage{std::move(message), std::move(name)};
}

HostResult<ReceivedMessage> receive_message(JsonLineChannel& channel, Deadline deadline) {
    auto message = channel.receive(deadline);
    if (!message) {
        return tl::unexpected(message.error());
    }
    return classify_message(std::move(*message));
}

}  // namespace vnetct::host_agent
