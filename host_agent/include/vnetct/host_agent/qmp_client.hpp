// A QMP client: greeting and capabilities negotiation, commands matched to
// their replies by id, and every asynchronous event kept in arrival order so a
// case can wait for one with a deadline or inspect them afterwards.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "vnetct/host_agent/errors.hpp"
#include "vnetct/host_agent/json_line_channel.hpp"

namespace vnetct::host_agent {

struct QmpEvent {
    std::string name;
    nlohmann::json data;       // the event's "data" member (null when absent)
    double qemu_timestamp = 0;  // seconds.microseconds of the event's "timestamp" (0 when absent)
    std::int64_t host_ns = 0;   // CLOCK_MONOTONIC when it arrived
    std::size_t index = 0;      // position among this client's events
};

class QmpClient {
  public:
    // Connects (retrying until the socket appears), reads the greeting
    // ({"QMP": {"version": ..., "capabilities": [...]}}, anything else is
    // Protocol) and negotiates capabilities. An empty transcript path keeps no
    // transcript.
    [[nodiscard]] static HostResult<QmpClient> connect(const std::string& socket_path,
                                                       const std::string& transcript_path, Deadline deadline,
                                                       std::size_t max_message_size = default_max_message_size);

    // The "QMP" member of the greeting.
    [[nodiscard]] const nlohmann::json& greeting() const { return m_greeting; }

    // Runs `command` (arguments omitted when null) and returns its "return"
    // value. An error reply is CommandFailed "<command>: <class>: <desc>"; a
    // reply with another id is Protocol. Events read meanwhile are stored.
    HostResult<nlohmann::json> execute(const std::string& command, const nlohmann::json& arguments,
                                       Deadline deadline);

    [[nodiscard]] const std::vector<QmpEvent>& events() const { return m_events.events(); }

    // The first event named `name` whose data holds every key of `match` (null:
    // any) among those with index >= from_index, reading more until `deadline`.
    // The failure detail names what was awaited, for how long, and the events
    // seen since `from_index`.
    HostResult<QmpEvent> wait_event(const std::string& name, const nlohmann::json& match, std::size_t from_index,
                                    Deadline deadline);

    // Reads whatever arrives until `deadline` (a Timeout is the normal end);
    // returns how many events arrived.
    HostResult<std::size_t> pump(Deadline deadline);

    // QEMU hung up (it exited or closed the monitor).
    [[nodiscard]] bool closed() const { return m_channel.closed(); }

    // A remark of the harness in the transcript.
    void note(std::string_view text) { m_channel.note(text); }

  private:
    explicit QmpClient(JsonLineChannel channel) : m_channel(std::move(channel)) {}

    // Reads one message: stores an event, returns a reply (null for an event).
    HostResult<nlohmann::json> read_one(Deadline deadline);
    // read_one where only an event may come (no command is running).
    HostResult<void> read_event(Deadline deadline);

    JsonLineChannel m_channel;
    nlohmann::json m_greeting;
    std::int64_t m_next_id = 1;
    EventLog<QmpEvent> m_events;
};

}  // namespace vnetct::host_agent
