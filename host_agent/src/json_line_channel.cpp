#include "vnetct/host_agent/json_line_channel.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace vnetct::host_agent {

namespace {

constexpr std::size_t read_chunk_size = 64 * 1024;
constexpr std::size_t quoted_text_limit = 200;
constexpr std::chrono::milliseconds first_connect_backoff{2};
constexpr std::chrono::milliseconds max_connect_backoff{50};

std::string errno_text(int error) { return std::strerror(error); }

// Poll timeout in ms for the time left until `deadline`, rounded up so a wait
// never ends a moment before the deadline and spins.
int poll_timeout_ms(Deadline deadline) {
    const auto left = deadline - Clock::now();
    if (left <= Clock::duration::zero()) {
        return 0;
    }
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    return ms > 1'000'000 ? 1'000'000 : static_cast<int>(ms);
}

// Waits for `events` on `fd` until `deadline`. Returns the revents, 0 on timeout.
HostResult<short> wait_for(int fd, short events, Deadline deadline) {
    for (;;) {
        pollfd entry{fd, events, 0};
        const int ready = ::poll(&entry, 1, poll_timeout_ms(deadline));
        if (ready > 0) {
            return entry.revents;
        }
        if (ready == 0) {
            if (Clock::now() >= deadline) {
                return short{0};
            }
            continue;
        }
        if (errno != EINTR) {
            return fail(HostErrc::Io, "poll: " + errno_text(errno));
        }
    }
}

std::string quote(std::string_view text) {
    if (text.size() <= quoted_text_limit) {
        return std::string(text);
    }
    return std::string(text.substr(0, quoted_text_limit)) + "... (" + std::to_string(text.size()) + " bytes)";
}

bool is_blank(std::string_view text) {
    return text.find_first_not_of(" \t\r") == std::string_view::npos;
}

std::string dump(const nlohmann::json& message) {
    return message.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

HostResult<JsonLineChannel> JsonLineChannel::connect(const std::string& path, Deadline deadline,
                                                     std::size_t max_message_size) {
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
            return JsonLineChannel(fd, path, max_message_size);
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
        const Deadline retry_at = std::min(deadline, Clock::now() + backoff);
        while (::poll(nullptr, 0, poll_timeout_ms(retry_at)) < 0 && errno == EINTR && Clock::now() < retry_at) {
        }
        backoff = std::min(backoff * 2, max_connect_backoff);
    }
}

JsonLineChannel::JsonLineChannel(int fd, std::string path, std::size_t max_message_size)
    : m_fd(fd), m_path(std::move(path)), m_max_message_size(max_message_size) {}

JsonLineChannel::JsonLineChannel(JsonLineChannel&& other) noexcept
    : m_fd(std::exchange(other.m_fd, -1)),
      m_path(std::move(other.m_path)),
      m_max_message_size(other.m_max_message_size),
      m_buffer(std::move(other.m_buffer)),
      m_scanned(std::exchange(other.m_scanned, 0)),
      m_buffer_arrival_ns(other.m_buffer_arrival_ns),
      m_last_arrival_ns(other.m_last_arrival_ns),
      m_closed(std::exchange(other.m_closed, true)),
      m_oversized(other.m_oversized),
      m_transcript(std::move(other.m_transcript)) {}

JsonLineChannel& JsonLineChannel::operator=(JsonLineChannel&& other) noexcept {
    if (this != &other) {
        close_fd();
        m_fd = std::exchange(other.m_fd, -1);
        m_path = std::move(other.m_path);
        m_max_message_size = other.m_max_message_size;
        m_buffer = std::move(other.m_buffer);
        m_scanned = std::exchange(other.m_scanned, 0);
        m_buffer_arrival_ns = other.m_buffer_arrival_ns;
        m_last_arrival_ns = other.m_last_arrival_ns;
        m_closed = std::exchange(other.m_closed, true);
        m_oversized = other.m_oversized;
        m_transcript = std::move(other.m_transcript);
    }
    return *this;
}

JsonLineChannel::~JsonLineChannel() { close_fd(); }

void JsonLineChannel::close_fd() {
    if (m_fd >= 0) {
        ::close(m_fd);
        m_fd = -1;
    }
}

HostResult<void> JsonLineChannel::send(const nlohmann::json& message) {
    return send(message, Clock::now() + default_send_timeout);
}

HostResult<void> JsonLineChannel::send(const nlohmann::json& message, Deadline deadline) {
    if (m_fd < 0 || m_closed) {
        return fail(HostErrc::Closed, "sending to " + m_path + " after the peer hung up");
    }
    std::string line = dump(message);
    m_transcript.record(TranscriptDirection::Out, message);
    line += '\n';
    std::size_t sent = 0;
    while (sent < line.size()) {
        const ssize_t written = ::send(m_fd, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
        if (written >= 0) {
            sent += static_cast<std::size_t>(written);
            continue;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EPIPE || errno == ECONNRESET) {
            m_closed = true;
            return fail(HostErrc::Closed, "sending to " + m_path + ": " + errno_text(errno));
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            return fail(HostErrc::Io, "sending to " + m_path + ": " + errno_text(errno));
        }
        auto ready = wait_for(m_fd, POLLOUT, deadline);
        if (!ready) {
            return tl::unexpected(ready.error());
        }
        if (*ready == 0) {
            return fail(HostErrc::Timeout, "the peer at " + m_path + " took " + std::to_string(sent) + " of " +
                                               std::to_string(line.size()) + " bytes before the deadline");
        }
    }
    return {};
}

HostResult<void> JsonLineChannel::read_more(Deadline deadline) {
    auto ready = wait_for(m_fd, POLLIN, deadline);
    if (!ready) {
        return tl::unexpected(ready.error());
    }
    if (*ready == 0) {
        return fail(HostErrc::Timeout, "no complete message from " + m_path);
    }
    const std::size_t old_size = m_buffer.size();
    m_buffer.resize(old_size + read_chunk_size);
    ssize_t got = -1;
    do {
        got = ::read(m_fd, m_buffer.data() + old_size, read_chunk_size);
    } while (got < 0 && errno == EINTR);
    const int error = errno;
    m_buffer.resize(old_size + static_cast<std::size_t>(got > 0 ? got : 0));
    if (got > 0) {
        m_buffer_arrival_ns = monotonic_now_ns();
        return {};
    }
    if (got < 0 && (error == EAGAIN || error == EWOULDBLOCK)) {
        return {};
    }
    if (got < 0 && error != ECONNRESET) {
        return fail(HostErrc::Io, "reading from " + m_path + ": " + errno_text(error));
    }
    m_closed = true;
    if (is_blank(m_buffer)) {
        m_buffer.clear();
        return fail(HostErrc::Closed, m_path + " hung up between messages");
    }
    m_transcript.record_raw(TranscriptDirection::In, m_buffer, m_buffer_arrival_ns);
    const std::string partial = quote(m_buffer);
    m_buffer.clear();
    m_scanned = 0;
    return fail(HostErrc::Closed, m_path + " hung up in the middle of a message: " + partial);
}

HostResult<nlohmann::json> JsonLineChannel::receive(Deadline deadline) {
    if (m_oversized) {
        return fail(HostErrc::Oversized, "the channel to " + m_path + " lost its framing after an oversized message");
    }
    for (;;) {
        const std::size_t newline = m_buffer.find('\n', m_scanned);
        if (newline == std::string::npos) {
            m_scanned = m_buffer.size();
            if (m_buffer.size() > m_max_message_size) {
                m_oversized = true;
                const std::string head = quote(m_buffer);
                m_buffer.clear();
                m_scanned = 0;
                return fail(HostErrc::Oversized, "more than " + std::to_string(m_max_message_size) +
                                                     " bytes without a line end from " + m_path + ": " + head);
            }
            if (m_closed || m_fd < 0) {
                return fail(HostErrc::Closed, m_path + " hung up");
            }
            HostResult<void> read = read_more(deadline);
            if (!read) {
                return tl::unexpected(read.error());
            }
            continue;
        }
        std::string line = m_buffer.substr(0, newline);
        m_buffer.erase(0, newline + 1);
        m_scanned = 0;
        if (line.size() > m_max_message_size) {
            m_oversized = true;
            return fail(HostErrc::Oversized, "a line of " + std::to_string(line.size()) + " bytes (limit " +
                                                 std::to_string(m_max_message_size) + ") from " + m_path + ": " +
                                                 quote(line));
        }
        if (is_blank(line)) {
            continue;
        }
        m_last_arrival_ns = m_buffer_arrival_ns;
        nlohmann::json message = nlohmann::json::parse(line, nullptr, false);
        if (message.is_discarded()) {
            m_transcript.record_raw(TranscriptDirection::In, line, m_last_arrival_ns);
            return fail(HostErrc::Malformed, "from " + m_path + ": " + quote(line));
        }
        m_transcript.record(TranscriptDirection::In, message, m_last_arrival_ns);
        return message;
    }
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
            entry += quote(dump(*data[i]));
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

}  // namespace vnetct::host_agent
