#include "vnetct/host_agent/guest_agent_client.hpp"

namespace vnetct::host_agent {

HostResult<GuestAgentClient> GuestAgentClient::connect(const std::string& socket_path,
                                                       const std::string& transcript_path, Deadline deadline,
                                                       std::size_t max_message_size) {
    auto transcript = Transcript::open(transcript_path);
    if (!transcript) {
        return tl::unexpected(transcript.error());
    }
    auto channel = JsonLineChannel::connect(socket_path, deadline, max_message_size);
    if (!channel) {
        transcript->note("connect failed: " + channel.error().message());
        return tl::unexpected(channel.error());
    }
    channel->set_transcript(std::move(*transcript));
    return GuestAgentClient(std::move(*channel));
}

HostResult<nlohmann::json> GuestAgentClient::wait_hello(Deadline deadline) {
    auto hello = wait_event("hello", nullptr, 0, deadline);
    if (!hello) {
        return tl::unexpected(hello.error());
    }
    return hello->data;
}

HostResult<nlohmann::json> GuestAgentClient::read_one(Deadline deadline) {
    auto received = receive_message(m_channel, deadline);
    if (!received) {
        return tl::unexpected(received.error());
    }
    nlohmann::json& message = received->message;
    if (received->event) {
        auto stored = m_events.append(AgentEvent{*received->event, std::move(message), m_channel.last_arrival_ns(), 0},
                                      "the guest agent at " + m_channel.path(), m_channel.last_line_bytes());
        if (!stored) {
            return tl::unexpected(stored.error());
        }
        return nlohmann::json();
    }
    if (!message.contains("id") || !message.contains("ok") || !message["ok"].is_boolean()) {
        return fail(HostErrc::Protocol, "neither an event nor a reply: " + brief(message));
    }
    return std::move(message);
}

HostResult<void> GuestAgentClient::read_event(Deadline deadline) {
    return accept_between_requests(read_one(deadline), m_next_id, [this](std::string_view text) { note(text); },
                                   "request");
}

HostResult<nlohmann::json> GuestAgentClient::request(const std::string& cmd, const nlohmann::json& args,
                                                     Deadline deadline) {
    if (!args.is_null() && !args.is_object()) {
        return fail(HostErrc::InvalidArgument, cmd + ": arguments must be an object, got " + brief(args));
    }
    if (args.contains("id") || args.contains("cmd")) {
        return fail(HostErrc::InvalidArgument, cmd + ": arguments may not hold \"id\" or \"cmd\": " + brief(args));
    }
    const std::int64_t id = m_next_id++;
    nlohmann::json message{{"id", id}, {"cmd", cmd}};
    if (args.is_object()) {
        message.update(args);
    }
    if (auto sent = m_channel.send(message, deadline); !sent) {
        return fail(sent.error().code, cmd + ": " + sent.error().detail);
    }
    for (;;) {
        auto reply = read_one(deadline);
        if (!reply) {
            return fail(reply.error().code, "waiting for the reply to " + cmd + " (id " + std::to_string(id) +
                                                "): " + reply.error().detail);
        }
        if (reply->is_null()) {
            continue;
        }
        if (is_late_reply(*reply, id)) {
            note("dropped a late reply (its request had already given up): " + brief(*reply));
            continue;
        }
        if ((*reply)["id"] != id) {
            return fail(HostErrc::Protocol,
                        "reply to " + cmd + " should carry id " + std::to_string(id) + ": " + brief(*reply));
        }
        if (!(*reply)["ok"].get<bool>()) {
            const auto error = reply->find("error");
            const std::string text = error == reply->end() ? "(no error text)"
                                     : error->is_string()  ? error->get<std::string>()
                                                           : brief(*error);
            return fail(HostErrc::CommandFailed, cmd + ": " + text);
        }
        return reply->value("result", nlohmann::json());
    }
}

HostResult<AgentEvent> GuestAgentClient::wait_event(const std::string& name, const nlohmann::json& match,
                                                    std::size_t from_index, Deadline deadline) {
    return m_events.wait("guest agent event", name, match, from_index, deadline,
                         [this](Deadline until) { return read_event(until); });
}

HostResult<std::size_t> GuestAgentClient::pump(Deadline deadline) {
    return m_events.pump(deadline, [this](Deadline until) { return read_event(until); });
}

}  // namespace vnetct::host_agent
