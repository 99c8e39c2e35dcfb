// The poll loop: moves bytes between the stream, the channels' fds and the
// processes' pidfds; what a request means is decided in requests.cpp.
#include "session.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <iomanip>
#include <iostream>

#include "vnetct/remote/base64.hpp"

namespace vnetct::remote {
namespace {

constexpr auto kPortRetry = std::chrono::milliseconds(100);  // re-check a port nobody listens on
constexpr std::size_t kReadChunk = 64 * 1024;
constexpr std::size_t kMaxReadPerWakeup = 1U << 20;          // keep the channels served under a flood

void log_line(const std::string& text) {
    timespec boot{};
    ::clock_gettime(CLOCK_BOOTTIME, &boot);
    std::cerr << "vnetct-host-agent: " << text << " (up " << boot.tv_sec << "." << std::setfill('0')
              << std::setw(2) << boot.tv_nsec / 10'000'000 << " s)"
              << std::endl;
}

std::string errno_text(const char* what, int error) { return std::string(what) + ": " + std::strerror(error); }

// A write that reports a peer gone as EPIPE instead of raising SIGPIPE (the
// daemon ignores SIGPIPE; a process serving in a thread, a test, may not).
ssize_t write_some(int fd, const char* data, std::size_t size) {
    const ssize_t count = ::send(fd, data, size, MSG_NOSIGNAL);
    if (count < 0 && errno == ENOTSOCK) {
        return ::write(fd, data, size);  // a pipe or a character device (the virtio-serial port)
    }
    return count;
}

}  // namespace

int serve(const RemoteOptions& options, int in_fd, int out_fd, int stop_fd) {
    Session session(options, in_fd, out_fd);
    return session.run(stop_fd);
}

void Session::send(const nlohmann::json& message) {
    m_out += message.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    m_out += '\n';
}

void Session::reply(const nlohmann::json& id, const Handled& handled) {
    if (handled) {
        nlohmann::json message = {{"id", id}, {"ok", true}};
        if (*handled && (*handled)->is_object()) {
            message.update(**handled);
        }
        send(message);
    } else {
        send({{"id", id}, {"ok", false}, {"error", {{"code", handled.error().code}, {"message", handled.error().message}}}});
    }
}

// Past this much unsent output the agent reads neither the stream nor the
// channels: a harness that does not read cannot make it hold more.
bool Session::output_full() const {
    return m_out.size() - m_out_offset > m_options.max_line_bytes * 2 + m_options.max_channels * m_options.window_bytes;
}

void Session::read_stream() {
    std::array<char, kReadChunk> chunk{};
    std::size_t total = 0;
    std::vector<RemoteResult<nlohmann::json>> lines;
    while (total < kMaxReadPerWakeup) {
        const ssize_t count = ::read(m_in_fd, chunk.data(), chunk.size());
        if (count < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                if (m_options.reconnecting) {
                    harness_went_away();  // EIO and the like: the host side closed
                } else {
                    log_line(errno_text("reading the stream", errno));
                    m_exit_code = 1;
                    m_stop = true;
                }
            }
            break;
        }
        if (count == 0) {
            if (m_options.reconnecting) {
                harness_went_away();  // virtio-serial: the host is not connected
            } else {
                m_stop = true;  // the end of input
            }
            break;
        }
        total += static_cast<std::size_t>(count);
        m_reader.append({chunk.data(), static_cast<std::size_t>(count)}, lines);
    }
    for (auto& line : lines) {
        if (line) {
            dispatch(*line);
        } else {
            reply(nullptr, tl::unexpected(reply_error(line.error())));
        }
    }
}

bool Session::flush_stream() {
    while (m_out_offset < m_out.size()) {
        const ssize_t count = write_some(m_out_fd, m_out.data() + m_out_offset, m_out.size() - m_out_offset);
        if (count < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return true;
            }
            if (m_options.reconnecting) {
                harness_went_away();
            } else {
                log_line(errno_text("writing the stream", errno));
                m_exit_code = 1;
                m_stop = true;
            }
            return false;
        }
        m_out_offset += static_cast<std::size_t>(count);
    }
    m_out.clear();
    m_out_offset = 0;
    return true;
}

// The harness went away: what was meant for it and the relays it spoke
// through go; the processes stay (a harness that comes back can wait for them).
void Session::harness_went_away() {
    if (!m_harness_away) {
        m_reader.clear();
        m_out.clear();
        m_out_offset = 0;
        while (!m_channels.empty()) {
            close_channel(m_channels.begin()->first, "the harness went away", false);
        }
        m_relays.clear();
        for (auto& [id, entry] : m_processes) {
            entry.waits.clear();
        }
        log_line("the harness went away; waiting for it");
    }
    m_harness_away = true;
    m_port_retry = Clock::now() + kPortRetry;
}

int Session::add_channel(int fd, ChannelKind kind, std::string what) {
    const int id = m_next_channel++;
    m_channels.emplace(id, Channel{fd, kind, std::move(what), 0, {}});
    return id;
}

void Session::close_channel(int id, const std::string& reason, bool notify) {
    const auto found = m_channels.find(id);
    if (found == m_channels.end()) {
        return;
    }
    ::close(found->second.fd);
    m_channels.erase(found);
    if (notify) {
        send({{"event", "closed"}, {"ch", id}, {"reason", reason}});
    }
}

void Session::read_channel(int id) {
    Channel& channel = m_channels.at(id);
    const std::size_t credit = m_options.window_bytes - std::min(m_options.window_bytes, channel.unacked);
    const std::size_t want = std::min(credit, m_options.max_frame_bytes);
    if (want == 0) {
        return;
    }
    std::string bytes(want, '\0');
    const ssize_t count = ::read(channel.fd, bytes.data(), want);
    if (count < 0) {
        if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
            close_channel(id, errno_text("read", errno), true);
        }
        return;
    }
    if (count == 0) {
        close_channel(id, channel.kind == ChannelKind::Output ? "end of output" : "the peer in L1 closed", true);
        return;
    }
    bytes.resize(static_cast<std::size_t>(count));
    channel.unacked += bytes.size();
    send({{"ch", id}, {"data", base64_encode(bytes)}});
}

void Session::write_channel(int id) {
    Channel& channel = m_channels.at(id);
    std::size_t written = 0;
    while (written < channel.to_fd.size()) {
        const ssize_t count = write_some(channel.fd, channel.to_fd.data() + written, channel.to_fd.size() - written);
        if (count < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                close_channel(id, errno_text("write", errno), true);
                return;
            }
            break;
        }
        written += static_cast<std::size_t>(count);
    }
    if (written > 0) {
        channel.to_fd.erase(0, written);
        send({{"ch", id}, {"ack", written}});
    }
}

// {"ch": C, "data": base64} or {"ch": C, "ack": N} from the harness.
void Session::channel_frame(const nlohmann::json& frame) {
    const auto& ch = frame["ch"];
    if (!ch.is_number_integer()) {
        reply(nullptr, tl::unexpected(reply_error(RemoteErrc::BadRequest, "\"ch\" is not an integer: " +
                                                                              ch.dump().substr(0, 40))));
        return;
    }
    const int id = ch.get<int>();
    const auto found = m_channels.find(id);
    if (found == m_channels.end()) {
        if (id <= 0 || id >= m_next_channel) {
            reply(nullptr, tl::unexpected(reply_error(RemoteErrc::NoSuchChannel,
                                                      "a frame for channel " + std::to_string(id) + ", never opened")));
        }
        return;  // closed a moment ago: what was in flight is dropped
    }
    Channel& channel = found->second;
    if (const auto ack = frame.find("ack"); ack != frame.end()) {
        if (!ack->is_number_unsigned() || ack->get<std::size_t>() > channel.unacked) {
            close_channel(id, Error<RemoteErrc>{RemoteErrc::WindowExceeded, "an acknowledgement of " +
                              ack->dump().substr(0, 40) + " bytes with " + std::to_string(channel.unacked) +
                              " unacknowledged"}.message(), true);
            return;
        }
        channel.unacked -= ack->get<std::size_t>();
        return;
    }
    const auto data = frame.find("data");
    if (data == frame.end() || !data->is_string()) {
        reply(nullptr, tl::unexpected(reply_error(RemoteErrc::BadRequest, "a channel frame with neither \"data\" "
                                                                          "(a string) nor \"ack\"")));
        return;
    }
    if (channel.kind != ChannelKind::Relay) {
        close_channel(id, "data for " + channel.what + ", which only sends", true);
        return;
    }
    auto bytes = base64_decode(data->get_ref<const std::string&>());
    if (!bytes) {
        close_channel(id, Error<RemoteErrc>{RemoteErrc::BadData, "channel " + std::to_string(id)}.message(), true);
        return;
    }
    if (channel.to_fd.size() + bytes->size() > m_options.window_bytes) {
        close_channel(id, Error<RemoteErrc>{RemoteErrc::WindowExceeded,
                          std::to_string(channel.to_fd.size() + bytes->size()) + " bytes unacknowledged, window " +
                          std::to_string(m_options.window_bytes)}.message(), true);
        return;
    }
    channel.to_fd += *bytes;
    write_channel(id);  // at once: latency; what the socket does not take waits for POLLOUT
}

void Session::reap(int process_id) {
    ProcessEntry& entry = m_processes.at(process_id);
    if (entry.status) {
        return;
    }
    entry.status = entry.process.poll();
    if (!entry.status) {
        return;
    }
    nlohmann::json status = {{"process", process_id}, {"pid", entry.process.pid()}, {"code", entry.status->code},
                             {"signal", entry.status->signal}, {"describe", entry.status->describe()}};
    nlohmann::json event = status;
    event["event"] = "exited";
    send(event);
    for (const PendingWait& wait : entry.waits) {
        reply(wait.id, status);
    }
    entry.waits.clear();
}

void Session::run_timers() {
    const auto now = Clock::now();
    for (auto& [id, entry] : m_processes) {
        if (!entry.status && entry.process.pidfd() < 0) {
            reap(id);  // no pidfd: looked at on every timer
        }
        auto& waits = entry.waits;
        for (auto it = waits.begin(); it != waits.end();) {
            if (now >= it->deadline) {
                reply(it->id, tl::unexpected(reply_error(
                                  RemoteErrc::Timeout, "wait: process " + std::to_string(id) + " (" + entry.command +
                                                           ", pid " + std::to_string(entry.process.pid()) +
                                                           ") still running after " + std::to_string(it->seconds) + " s")));
                it = waits.erase(it);
            } else {
                ++it;
            }
        }
    }
    for (auto it = m_relays.begin(); it != m_relays.end();) {
        if (now >= it->next_try && try_relay(*it)) {
            it = m_relays.erase(it);
        } else {
            ++it;
        }
    }
}

int Session::poll_timeout_ms() const {
    std::optional<Clock::time_point> next;
    const auto consider = [&next](Clock::time_point at) { next = next ? std::min(*next, at) : at; };
    for (const auto& [id, entry] : m_processes) {
        for (const PendingWait& wait : entry.waits) {
            consider(wait.deadline);
        }
        if (!entry.status && entry.process.pidfd() < 0) {
            consider(Clock::now() + std::chrono::milliseconds(50));
        }
    }
    for (const PendingRelay& relay : m_relays) {
        consider(relay.next_try);
    }
    if (m_harness_away) {
        consider(m_port_retry);
    }
    if (!next) {
        return -1;
    }
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(*next - Clock::now()).count();
    return static_cast<int>(std::clamp<long long>(left, 0, 60'000));
}

int Session::run(int stop_fd) {
    for (const int fd : {m_in_fd, m_out_fd}) {  // the loop reads and writes what is there, never waits in a call
        ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    }
    send([this] {
        nlohmann::json event = hello();
        event["event"] = "hello";
        return event;
    }());
    std::vector<pollfd> fds;
    std::vector<int> channel_ids;
    std::vector<int> process_ids;
    while (!m_stop) {
        const auto now = Clock::now();
        const bool watch_stream = !m_harness_away || now >= m_port_retry;
        const bool room = !output_full();
        const short stream_events = static_cast<short>((room ? POLLIN : 0) | (m_out.empty() ? 0 : POLLOUT));
        fds.clear();
        fds.push_back({stop_fd, POLLIN, 0});
        if (m_in_fd == m_out_fd) {
            fds.push_back({watch_stream ? m_in_fd : -1, stream_events, 0});
            fds.push_back({-1, 0, 0});
        } else {
            fds.push_back({watch_stream ? m_in_fd : -1, static_cast<short>(room ? POLLIN : 0), 0});
            fds.push_back({watch_stream && !m_out.empty() ? m_out_fd : -1, POLLOUT, 0});
        }
        channel_ids.clear();
        for (const auto& [id, channel] : m_channels) {
            const bool credit = channel.unacked < m_options.window_bytes && room && !m_harness_away;
            const auto events = static_cast<short>((credit ? POLLIN : 0) | (channel.to_fd.empty() ? 0 : POLLOUT));
            // nothing asked: not polled at all (a hung-up socket reports POLLHUP whatever is asked)
            fds.push_back({events != 0 ? channel.fd : -1, events, 0});
            channel_ids.push_back(id);
        }
        process_ids.clear();
        for (const auto& [id, entry] : m_processes) {
            if (!entry.status && entry.process.pidfd() >= 0) {
                fds.push_back({entry.process.pidfd(), POLLIN, 0});
                process_ids.push_back(id);
            }
        }
        if (::poll(fds.data(), fds.size(), poll_timeout_ms()) < 0) {
            if (errno == EINTR) {
                continue;
            }
            log_line(errno_text("poll", errno));
            return 1;
        }
        if (fds[0].revents != 0) {
            break;
        }
        const short in_events = fds[1].revents;
        const short out_events = m_in_fd == m_out_fd ? fds[1].revents : fds[2].revents;
        const bool hangup = ((in_events | out_events) & (POLLHUP | POLLERR)) != 0;
        if (m_harness_away && (in_events | out_events) != 0 && !hangup) {
            m_harness_away = false;  // it is back: greet it
            log_line("the harness is back");
            nlohmann::json event = hello();
            event["event"] = "hello";
            send(event);
        }
        if ((in_events & (POLLIN | POLLHUP)) != 0 && !m_harness_away) {
            read_stream();  // reads the end of input (0) too
        }
        if (hangup && m_options.reconnecting) {
            harness_went_away();
        }
        std::size_t index = 3;
        for (const int id : channel_ids) {
            const short events = fds[index++].revents;
            if (m_channels.count(id) != 0 && (events & POLLOUT) != 0) {
                write_channel(id);
            }
            if (m_channels.count(id) != 0 && (events & (POLLIN | POLLHUP | POLLERR)) != 0) {
                read_channel(id);  // reads the end (0) or the error too
            }
        }
        for (const int id : process_ids) {
            if (fds[index++].revents != 0) {
                reap(id);
            }
        }
        run_timers();
        if (!m_harness_away && !m_out.empty()) {
            flush_stream();
        }
    }
    if (!m_harness_away) {
        flush_stream();  // best effort: the last replies, e.g. to requests before the end of input
    }
    while (!m_channels.empty()) {
        close_channel(m_channels.begin()->first, "the agent stops", false);
    }
    return m_exit_code;
}

}  // namespace vnetct::remote
