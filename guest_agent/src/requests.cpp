#include "vnetct/guest_agent/requests.hpp"

#include <array>
#include <exception>
#include <utility>

#include "vnetct/guest_agent/json_line.hpp"

namespace vnetct::guest_agent {
namespace {

using nlohmann::json;
using Handler = GuestResult<json> (*)(const json& request, AgentServices& services);

std::string error_reply(const json& id, const Error<GuestErrc>& error) {
    return to_json_line(json{{"id", id}, {"ok", false}, {"error", error.message()}});
}

GuestResult<std::string> string_argument(const json& request, const char* key) {
    const auto found = request.find(key);
    if (found == request.end()) {
        return fail(GuestErrc::BadArgument, std::string("missing string \"") + key + "\"");
    }
    if (!found->is_string()) {
        return fail(GuestErrc::BadArgument, std::string("\"") + key + "\" must be a string, not " +
                                                found->type_name());
    }
    return found->get<std::string>();
}

GuestResult<json> handle_ping(const json& /*request*/, AgentServices& /*services*/) { return json::object(); }

GuestResult<json> handle_report(const json& /*request*/, AgentServices& services) { return services.report(); }

GuestResult<json> handle_kernel_log(const json& /*request*/, AgentServices& services) {
    return services.kernel_log().map([](std::vector<std::string> lines) { return json{{"lines", std::move(lines)}}; });
}

GuestResult<json> handle_load_modules(const json& request, AgentServices& services) {
    const auto names = request.find("names");
    if (names == request.end() || !names->is_array()) {
        return fail(GuestErrc::BadArgument, "\"names\" must be an array of module names");
    }
    std::vector<std::string> module_names;
    for (const json& name : *names) {
        if (!name.is_string()) {
            return fail(GuestErrc::BadArgument, std::string("\"names\" holds a ") + name.type_name() +
                                                    ", expected module name strings");
        }
        module_names.push_back(name.get<std::string>());
    }
    return services.load_modules(module_names).map([](const std::vector<ModuleLoadOutcome>& outcomes) {
        json modules = json::array();
        for (const auto& outcome : outcomes) {
            modules.push_back(
                {{"name", outcome.name}, {"status", to_string(outcome.status)}, {"ms", outcome.milliseconds}});
        }
        return json{{"modules", std::move(modules)}};
    });
}

GuestResult<json> handle_ip_config(const json& request, AgentServices& services) {
    const auto ifname = string_argument(request, "ifname");
    if (!ifname) {
        return tl::unexpected(ifname.error());
    }
    const auto address = string_argument(request, "address");
    if (!address) {
        return tl::unexpected(address.error());
    }
    const auto prefix = parse_ipv4_prefix(*address);
    if (!prefix) {
        return tl::unexpected(prefix.error());
    }
    return services.configure_ipv4(*ifname, *prefix).map([&] {
        return json{{"ifname", *ifname}, {"address", *address}};
    });
}

GuestResult<json> handle_udp_echo(const json& request, AgentServices& services) {
    const auto port = request.find("port");
    if (port == request.end() || !port->is_number_integer()) {
        return fail(GuestErrc::BadArgument, "\"port\" must be an integer");
    }
    const auto value = port->get<std::int64_t>();
    if (value < 1 || value > 65535) {
        return fail(GuestErrc::BadArgument, "\"port\" " + std::to_string(value) + " is not 1-65535");
    }
    return services.start_udp_echo(static_cast<std::uint16_t>(value)).map([](std::uint16_t bound) {
        return json{{"port", bound}};
    });
}

// The hello as a reply, for a host that connects to a running agent (a guest
// restored from a snapshot): optionally setting the guest's CLOCK_REALTIME first
// ("set_realtime_ns", the host's clock), so the guest's wall clock is the host's.
GuestResult<json> handle_hello(const json& request, AgentServices& services) {
    const auto set = request.find("set_realtime_ns");
    if (set != request.end()) {
        if (!set->is_number_integer() || set->get<std::int64_t>() <= 0) {
            return fail(GuestErrc::BadArgument, std::string("\"set_realtime_ns\" must be a positive integer, not ") +
                                                    (set->is_number_integer() ? set->dump() : set->type_name()));
        }
        if (auto done = services.set_realtime_ns(set->get<std::int64_t>()); !done) {
            return tl::unexpected(done.error());
        }
    }
    json hello = hello_event(services.kernel_release(), services.monotonic_ns(), services.realtime_ns());
    hello.erase("event");
    return hello;
}

struct Command {
    std::string_view name;
    Handler handler;
};

constexpr std::array<Command, 7> kCommands = {{
    {"ping", handle_ping},
    {"hello", handle_hello},
    {"report", handle_report},
    {"kernel-log", handle_kernel_log},
    {"load-modules", handle_load_modules},
    {"ip-config", handle_ip_config},
    {"udp-echo", handle_udp_echo},
}};

std::string dispatch_object(const json& request, AgentServices& services) {
    const auto id_field = request.find("id");
    if (id_field == request.end()) {
        return error_reply(nullptr, {GuestErrc::BadRequest, "missing integer \"id\""});
    }
    if (!id_field->is_number_integer()) {
        return error_reply(nullptr, {GuestErrc::BadRequest, std::string("\"id\" must be an integer, not ") +
                                                                id_field->type_name()});
    }
    const json id = *id_field;
    const auto command_field = request.find("cmd");
    if (command_field == request.end() || !command_field->is_string()) {
        return error_reply(id, {GuestErrc::BadRequest, "missing string \"cmd\""});
    }
    const auto& command_name = command_field->get_ref<const std::string&>();
    for (const Command& command : kCommands) {
        if (command.name != command_name) {
            continue;
        }
        GuestResult<json> result = command.handler(request, services);
        if (!result) {
            return error_reply(id, result.error());
        }
        return to_json_line(
            json{{"id", id}, {"ok", true}, {"result", std::move(*result)}, {"t_guest_ns", services.monotonic_ns()}});
    }
    std::string known;
    for (const Command& command : kCommands) {
        known += known.empty() ? "" : ", ";
        known += command.name;
    }
    return error_reply(id, {GuestErrc::UnknownCommand, "\"" + command_name + "\" (known: " + known + ")"});
}

}  // namespace

std::vector<std::string> dispatch_request(std::string_view line, AgentServices& services) {
    if (line.size() > kMaxLineBytes) {
        return {oversized_line_reply(line.size())};
    }
    try {
        const json request = json::parse(line, nullptr, /*allow_exceptions=*/false);
        if (request.is_discarded()) {
            return {error_reply(nullptr, {GuestErrc::BadRequest, "line is not valid JSON"})};
        }
        if (!request.is_object()) {
            return {error_reply(nullptr, {GuestErrc::BadRequest, std::string("expected a JSON object, got ") +
                                                                     request.type_name()})};
        }
        return {dispatch_object(request, services)};
    } catch (const std::exception& exception) {
        return {error_reply(nullptr, {GuestErrc::BadRequest, exception.what()})};
    }
}

std::string oversized_line_reply(std::size_t discarded_bytes) {
    return error_reply(nullptr, {GuestErrc::LineTooLong, std::to_string(discarded_bytes) + " bytes"});
}

nlohmann::json hello_event(const std::string& kernel, std::int64_t t_guest_ns, std::int64_t t_guest_realtime_ns) {
    return json{{"event", "hello"},
                {"version", kProtocolVersion},
                {"kernel", kernel},
                {"t_guest_ns", t_guest_ns},
                {"t_guest_realtime_ns", t_guest_realtime_ns}};
}

}  // namespace vnetct::guest_agent
