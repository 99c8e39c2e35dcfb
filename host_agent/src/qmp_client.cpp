#include "vnetct/host_agent/qmp_client.hpp"

namespace vnetct::host_agent {

namespace {

double qemu_timestamp(const nlohmann::json& message) {
    const auto timestamp = message.find("timestamp");
    if (timestamp == message.end() || !timestamp->is_object()) {
        return 0;
    }
    const auto number = [&](const char* key) {
        const auto member = timestamp->find(key);
        return member != timestamp->end() && member->is_number() ? member->get<double>() : 0.0;
    };
    return number("seconds") + number("microseconds") / 1e6;
}

// The string member `key`, or its JSON text when it is no string.
std::string string_member(const nlohmann::json& object, const char* key) {
    const auto member = object.find(key);
    if (member == object.end()) {
        return "?";
    }
    return member->is_string() ? member->get<std::string>() : brief(*member);
}

bool is_reply(const nlohmann::json& message) { return message.contains("return") || message.contains("error"); }

}  // namespace

HostResult<QmpClient> QmpClient::connect(const std::string& socket_path, const std::string& transcript_path,
                                         Deadline deadline, std::size_t max_message_size) {
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
    QmpClient client(std::move(*channel));

    auto greeting = client.m_channel.receive(deadline);
    if (!greeting) {
        return fail(greeting.error().code, "reading the QMP greeting: " + greeting.error().detail);
    }
    const bool is_greeting = greeting->is_object() && greeting->size() == 1 && greeting->contains("QMP") &&
                             (*greeting)["QMP"].is_object() && (*greeting)["QMP"].contains("version") &&
                             (*greeting)["QMP"].value("capabilities", nlohmann::json()).is_array();
    if (!is_greeting) {
        return fail(HostErrc::Protocol, "expected the QMP greeting, got " + brief(*greeting));
    }
    client.m_greeting = (*greeting)["QMP"];

    auto negotiated = client.execute("qmp_capabilities", nullptr, deadline);
    if (!negotiated) {
        return tl::unexpected(negotiated.error());
    }
    if (*negotiated != nlohmann::json::object()) {
        return fail(HostErrc::Protocol, "qmp_capabilities returned " + brief(*negotiated));
    }
    return client;
}

HostResult<nlohmann::json> QmpClient::read_one(Deadline deadline) {
    auto received = receive_message(m_channel, deadline);
    if (!received) {
        return tl::unexpected(received.error());
    }
    nlohmann::json& message = received->message;
    if (received->event) {
        auto stored = m_events.append(QmpEvent{*received->event, message.value("data", nlohmann::json()),
                                               qemu_timestamp(message), m_channel.last_arrival_ns(), 0},
                                      "QMP at " + m_channel.path(), m_channel.last_line_bytes());
        if (!stored) {
            return tl::unexpected(stored.error());
        }
        return nlohmann::json();
    }
    if (!is_reply(message)) {
        return fail(HostErrc::Protocol, "neither an event nor a reply: " + brief(message));
    }
    return std::move(message);
}

HostResult<void> QmpClient::read_event(Deadline deadline) {
    return accept_between_requests(read_one(deadline), m_next_id, [this](std::string_view text) { note(text); },
                                   "command");
}

HostResult<nlohmann::json> QmpClient::execute(const std::string& command, const nlohmann::json& arguments,
                                              Deadline deadline) {
    const std::int64_t id = m_next_id++;
    nlohmann::json request{{"execute", command}};
    if (!arguments.is_null()) {
        request["arguments"] = arguments;
    }
    request["id"] = id;
    if (auto sent = m_channel.send(request, deadline); !sent) {
        return fail(sent.error().code, command + ": " + sent.error().detail);
    }
    for (;;) {
        auto reply = read_one(deadline);
        if (!reply) {
            return fail(reply.error().code,
                        "waiting for the reply to " + command + " (id " + std::to_string(id) + "): " +
                            reply.error().detail);
        }
        if (reply->is_null()) {
            continue;
        }
        if (is_late_reply(*reply, id)) {
            note("dropped a late reply (its request had already given up): " + brief(*reply));
            continue;
        }
        const auto reply_id = reply->find("id");
        if (reply_id == reply->end() || *reply_id != id) {
            return fail(HostErrc::Protocol,
                        "reply to " + command + " should carry id " + std::to_string(id) + ": " + brief(*reply));
        }
        if (const auto error = reply->find("error"); error != reply->end()) {
            if (!error->is_object()) {
                return fail(HostErrc::Protocol, "error reply to " + command + " is not an object: " + brief(*reply));
            }
            return fail(HostErrc::CommandFailed,
                        command + ": " + string_member(*error, "class") + ": " + string_member(*error, "desc"));
        }
        return (*reply)["return"];
    }
}

HostResult<QmpEvent> QmpClient::wait_event(const std::string& name, const nlohmann::json& match,
                                           std::size_t from_index, Deadline deadline) {
    return m_events.wait("QMP event", name, match, from_index, deadline, [this](Deadline until) { return read_event(until); });
}

HostResult<std::size_t> QmpClient::pump(Deadline deadline) {
    return m_events.pump(deadline, [this](Deadline until) { return read_event(until); });
}

}  // namespace vnetct::host_agent
