// A connected unix stream socket speaking line-delimited JSON, the framing both
// QMP and the vnetct guest agent use, read on arrival by a thread of its own;
// and the event store the clients of such a channel share (events kept in
// arrival order, waits with a deadline).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "vnetct/host_agent/errors.hpp"
#include "vnetct/host_agent/transcript.hpp"

namespace vnetct::host_agent {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

inline constexpr std::size_t default_max_message_size = std::size_t{16} * 1024 * 1024;

// Bounds on what an untrusted peer (a vendor's guest agent, a broken QEMU) can
// make the harness keep. A line nesting arrays/objects deeper than this is
// Malformed: parsing is iterative, but copying, dumping and converting a value
// to Python recurse, and 200 000 levels overflow the stack. QMP and the agent
// nest a handful of levels.
inline constexpr std::size_t max_json_depth = 64;
// Lines read but not yet received: at most this many, and at most twice the
// channel's max_message_size bytes of them (32 MiB by default); past either
// the reader stops and, after what is queued, receive() gives Flooded. Both
// clients receive as they go; a case sees a few hundred events.
inline constexpr std::size_t max_queued_messages = 16 * 1024;
// Events one client keeps for a case (EventLog), and the bytes of their lines:
// past either, Flooded. Parsed and then converted to Python an event takes a
// few times its line (100 000 lines of 1 KiB: 177 MB in the native log alone),
// so the byte bound is what keeps a flooding peer's cost to the harness small.
inline constexpr std::size_t max_stored_events = 100'000;
inline constexpr std::size_t max_stored_event_bytes = std::size_t{16} * 1024 * 1024;

// True when `text`, read as JSON, opens arrays/objects more than `limit` deep
// (brackets inside strings do not count). One pass, no recursion, no
// allocation: run on a line before parsing it.
[[nodiscard]] bool nests_deeper_than(std::string_view text, std::size_t limit);

// send() without a deadline gives the peer this long to take the bytes.
inline constexpr std::chrono::seconds default_send_timeout{5};

// Poll timeout in ms for the time left until `deadline`, rounded up so a wait
// never ends a moment before the deadline and spins.
[[nodiscard]] int poll_timeout_ms(Deadline deadline);

// A connected non-blocking unix stream socket. A missing socket (ENOENT) or
// one nobody listens on yet (ECONNREFUSED) is retried with a short backoff
// until `deadline` (Timeout); other errors fail at once (ConnectFailed). When
// `wake_fd` (>= 0) becomes readable the retries end at once (Closed).
[[nodiscard]] HostResult<int> connect_unix_socket(const std::string& path, Deadline deadline, int wake_fd = -1);

// A background reader thread, started by connect(), takes every line off the
// socket as it arrives: it stamps the line with CLOCK_MONOTONIC at the read
// that completed it, writes it to the transcript at once (so the transcript is
// in true arrival order with true arrival times, whoever is or is not calling
// receive() at the time) and queues it for receive(). The public API is for one
// caller at a time; only the reader thread runs alongside it.
class JsonLineChannel {
  public:
    // Connects to the unix socket at `path`. A missing socket (ENOENT) or one
    // nobody listens on yet (ECONNREFUSED) is retried with a short backoff until
    // `deadline` (Timeout); other errors fail at once (ConnectFailed).
    // A line longer than `max_message_size` bytes is refused (Oversized);
    // more than `max_queued` lines waiting unread are Flooded.
    [[nodiscard]] static HostResult<JsonLineChannel> connect(const std::string& path, Deadline deadline,
                                                             std::size_t max_message_size = default_max_message_size,
                                                             std::size_t max_queued = max_queued_messages);

    // Moving keeps the reader thread running: it works on state the channel
    // only points to. Destroying (or assigning over) a channel stops and joins
    // its reader and closes the socket, at once, whatever the peer does.
    JsonLineChannel(JsonLineChannel&& other) noexcept;
    JsonLineChannel& operator=(JsonLineChannel&& other) noexcept;
    JsonLineChannel(const JsonLineChannel&) = delete;
    JsonLineChannel& operator=(const JsonLineChannel&) = delete;
    ~JsonLineChannel();

    // Every message sent, every line arriving (peer text that was not JSON as
    // raw) and every note goes to this transcript from now on. Lines that have
    // arrived but were not yet received are written to it first, with their
    // arrival times, so a transcript set right after connect misses nothing.
    void set_transcript(Transcript transcript);

    // A remark of the harness in the transcript.
    void note(std::string_view text);

    // Writes `message` as one line. EPIPE/ECONNRESET -> Closed.
    HostResult<void> send(const nlohmann::json& message, Deadline deadline);
    HostResult<void> send(const nlohmann::json& message);

    // The next message, in arrival order. Timeout when `deadline` passes (a
    // passed deadline still takes what the reader has already taken off the
    // socket); Closed on end of stream, with the partial line in the detail
    // when it ended mid-line; Malformed for a line that is not JSON (the line
    // is consumed: the next receive reads on); Oversized for a line over the
    // limit (the channel is then unusable: framing is lost, and the reader
    // stops). A line nested deeper than max_json_depth is Malformed too.
    // Flooded once more than `max_queued` lines or 2 * max_message_size
    // bytes wait unread: the reader stops there, what it queued is still received first.
    // Blank lines are skipped.
    [[nodiscard]] HostResult<nlohmann::json> receive(Deadline deadline);

    // CLOCK_MONOTONIC ns when the bytes completing the last received message
    // were read from the socket (by the reader thread, on arrival).
    [[nodiscard]] std::int64_t last_arrival_ns() const { return m_last_arrival_ns; }
    // The size of that message's line in bytes.
    [[nodiscard]] std::size_t last_line_bytes() const { return m_last_line_bytes; }

    // The peer hung up (end of stream or reset), as seen by the reader or by
    // send(); messages that came before may still be waiting for receive().
    [[nodiscard]] bool closed() const;

    [[nodiscard]] const std::string& path() const;

  private:
    struct Shared;  // what the reader thread and the caller share
    explicit JsonLineChannel(std::unique_ptr<Shared> shared);
    // Starts the reader on the connected socket `fd` (closed on failure).
    [[nodiscard]] static HostResult<JsonLineChannel> start_reader(int fd, std::string path,
                                                                  std::size_t max_message_size,
                                                                  std::size_t max_queued);

    std::unique_ptr<Shared> m_shared;
    std::int64_t m_last_arrival_ns = 0;
    std::size_t m_last_line_bytes = 0;
};

// True when `match` is null, or an object whose every key is present in
// `data` with an equal value.
[[nodiscard]] // A reply whose integer id is below `first_live_id`: its request gave up (timed
// out) before it came. Both clients drop such replies instead of failing.
[[nodiscard]] inline bool is_late_reply(const nlohmann::json& reply, std::int64_t first_live_id) {
    const auto id = reply.find("id");
    return id != reply.end() && id->is_number_integer() && id->get<std::int64_t>() < first_live_id;
}

// A message shortened to 200 characters for error texts.
[[nodiscard]] std::string brief(const nlohmann::json& message);

// One message as both clients read it: a JSON object, and, when it is an event
// ({"event": <string>, ...}), the event's name.
struct ReceivedMessage {
    nlohmann::json message;
    std::optional<std::string> event;
};
[[nodiscard]] HostResult<ReceivedMessage> receive_message(JsonLineChannel& channel, Deadline deadline);
// The same for a message already read: Protocol when it is no JSON object or
// its "event" is no string.
[[nodiscard]] HostResult<ReceivedMessage> classify_message(nlohmann::json message);

// What read_event of both clients does with the message it read: an event (the
// client returned null) is fine; a late reply to a request that gave up is
// dropped with a transcript note; any other reply is a Protocol error (nothing
// is running that could own it).
template <typename Note>
HostResult<void> accept_between_requests(HostResult<nlohmann::json> message, std::int64_t first_live_id,
                                         Note&& note, std::string_view what) {
    if (!message) {
        return tl::unexpected(message.error());
    }
    if (message->is_null()) {
        return {};
    }
    if (is_late_reply(*message, first_live_id)) {
        note("dropped a late reply (its request had already given up): " + brief(*message));
        return {};
    }
    return fail(HostErrc::Protocol, "a reply with no " + std::string(what) + " running: " + brief(*message));
}


bool json_matches(const nlohmann::json& data, const nlohmann::json& match);

// Compact list of event names for messages: "STOP, RESUME x3, NETDEV_..."; an
// event named `highlighted` shows its data too, to see why it did not match.
[[nodiscard]] std::string describe_events(const std::vector<std::string>& names,
                                          const std::vector<const nlohmann::json*>& data,
                                          std::string_view highlighted);

// Events of one channel in arrival order. Event is a struct with at least
// `std::string name; nlohmann::json data; std::size_t index;`.
template <typename Event>
class EventLog {
  public:
    [[nodiscard]] const std::vector<Event>& events() const { return m_events; }
    // The bytes of the stored events' lines.
    [[nodiscard]] std::size_t bytes() const { return m_bytes; }

    // Stores `event` (its line `line_bytes` long), numbering it with its
    // position; Flooded (naming `source`) once max_stored_events or
    // max_stored_event_bytes are kept: the event is dropped.
    HostResult<void> append(Event event, std::string_view source, std::size_t line_bytes = 0) {
        if (m_events.size() >= max_stored_events) {
            return fail(HostErrc::Flooded, std::string(source) + " sent more than " +
                                               std::to_string(max_stored_events) + " events (the last: " +
                                               event.name + "); later events are dropped");
        }
        if (m_bytes + line_bytes > max_stored_event_bytes) {
            return fail(HostErrc::Flooded, std::string(source) + " sent more than " +
                                               std::to_string(max_stored_event_bytes) + " bytes of events in " +
                                               std::to_string(m_events.size() + 1) + " events (the last: " +
                                               event.name + ", " + std::to_string(line_bytes) +
                                               " bytes); later events are dropped");
        }
        m_bytes += line_bytes;
        event.index = m_events.size();
        m_events.push_back(std::move(event));
        return {};
    }

    // The first stored event at or after `from_index` with this name (any
    // name when `name` is empty) whose data matches `match`, or nullptr.
    [[nodiscard]] const Event* find(std::string_view name, const nlohmann::json& match,
                                    std::size_t from_index) const {
        for (std::size_t i = from_index; i < m_events.size(); ++i) {
            if ((name.empty() || m_events[i].name == name) && json_matches(m_events[i].data, match)) {
                return &m_events[i];
            }
        }
        return nullptr;
    }

    // `read_one(deadline) -> HostResult<void>` reads and dispatches one message
    // (storing it here if it is an event). Stored events are looked at first.
    template <typename ReadOne>
    HostResult<Event> wait(std::string_view what, std::string_view name, const nlohmann::json& match,
                           std::size_t from_index, Deadline deadline, ReadOne&& read_one) {
        const Deadline start = Clock::now();
        std::size_t searched = from_index;
        for (;;) {
            if (const Event* found = find(name, match, searched)) {
                return *found;
            }
            searched = std::max(searched, m_events.size());
            HostResult<void> read = read_one(deadline);
            if (!read) {
                return fail(read.error().code,
                            wait_failure(what, name, match, from_index, start, deadline, read.error().code,
                                         read.error().detail));
            }
        }
    }

    // Reads and dispatches messages until `deadline`; a Timeout is the normal
    // end. Returns how many events arrived.
    template <typename ReadOne>
    HostResult<std::size_t> pump(Deadline deadline, ReadOne&& read_one) {
        const std::size_t before = m_events.size();
        for (;;) {
            HostResult<void> read = read_one(deadline);
            if (!read) {
                if (read.error().code == HostErrc::Timeout) {
                    return m_events.size() - before;
                }
                return tl::unexpected(read.error());
            }
        }
    }

  private:
    [[nodiscard]] std::string wait_failure(std::string_view what, std::string_view name, const nlohmann::json& match,
                                           std::size_t from_index, Deadline start, Deadline deadline,
                                           HostErrc code, const std::string& cause) const {
        std::vector<std::string> names;
        std::vector<const nlohmann::json*> data;
        for (std::size_t i = from_index; i < m_events.size(); ++i) {
            names.push_back(m_events[i].name);
            data.push_back(&m_events[i].data);
        }
        const auto waited = std::chrono::round<std::chrono::milliseconds>(deadline - start).count();
        std::string awaited = std::string(what) + " " + std::string(name);
        if (!match.is_null()) {
            awaited += " matching " + match.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        }
        const std::string budget = std::to_string(std::max<long long>(waited, 0)) + " ms";
        std::string text = code == HostErrc::Timeout
                               ? awaited + " not seen within " + budget
                               : "waiting up to " + budget + " for " + awaited + ": " + cause;
        text += "; events since #" + std::to_string(from_index) + ": " + describe_events(names, data, name);
        return text;
    }

    std::vector<Event> m_events;
    std::size_t m_bytes = 0;
};

}  // namespace vnetct::host_agent
