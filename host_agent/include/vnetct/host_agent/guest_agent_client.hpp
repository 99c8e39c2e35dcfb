// Client of the vnetct guest agent over its virtio-serial/unix socket. The
// agent speaks line JSON: it announces itself with {"event":"hello",...},
// answers {"id":N,"cmd":"<name>",...} with {"id":N,"ok":true,"result":{...}} or
// {"id":N,"ok":false,"error":"text"}, and reports what it sees in the guest as
// unsolicited {"event":"<name>","t_guest_ns":...,...}.
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

struct AgentEvent {
    std::string name;
    nlohmann::json data;       // the whole message, "event" and "t_guest_ns" included
    std::int64_t host_ns = 0;  // CLOCK_MONOTONIC when it arrived
    std::size_t index = 0;     // position among this client's events
};

class GuestAgentClient {
  public:
    // Connects (retrying until the socket appears). The hello is not awaited:
    // the guest may still be booting; see wait_hello.
    [[nodiscard]] static HostResult<GuestAgentClient> connect(const std::string& socket_path,
                                                              const std::string& transcript_path, Deadline deadline,
                                                              std::size_t max_message_size = default_max_message_size);

    // The first hello since connect (it is also stored as event "hello").
    HostResult<nlohmann::json> wait_hello(Deadline deadline);

    // Sends {"id":N,"cmd":cmd,...args} (args: an object or null; it may not
    // hold "id" or "cmd": InvalidArgument) and returns the reply's "result"
    // (null when absent). ok:false is CommandFailed "<cmd>: <agent's error>".
    // Events read meanwhile are stored.
    HostResult<nlohmann::json> request(const std::string& cmd, const nlohmann::json& args, Deadline deadline);

    [[nodiscard]] const std::vector<AgentEvent>& events() const { return m_events.events(); }

    // As QmpClient::wait_event; `match` is compared with the whole message.
    HostResult<AgentEvent> wait_event(const std::string& name, const nlohmann::json& match, std::size_t from_index,
                                      Deadline deadline);

    // Reads whatever arrives until `deadline`; returns how many events arrived.
    HostResult<std::size_t> pump(Deadline deadline);

    // The agent (or the guest) hung up.
    [[nodiscard]] bool closed() const { return m_channel.closed(); }

    void note(std::string_view text) { m_channel.note(text); }

  private:
    explicit GuestAgentClient(JsonLineChannel channel) : m_channel(std::move(channel)) {}

    // Reads one message: stores an event, returns a reply (null for an event).
    HostResult<nlohmann::json> read_one(Deadline deadline);
    // read_one where only an event may come (no request is running).
    HostResult<void> read_event(Deadline deadline);

    JsonLineChannel m_channel;
    std::int64_t m_next_id = 1;
    EventLog<AgentEvent> m_events;
};

}  // namespace vnetct::host_agent
