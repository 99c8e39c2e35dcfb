// The trace checker: the trace's JSON schema, checked and typed. Inside this file
// a schema error is thrown as SchemaError and caught in parse_failover_trace, the
// one boundary: the simplest way to stop at the first bad field of a nested
// document; nothing escapes it.
#include <array>
#include <cmath>
#include <utility>

#include "vnetct/reference_impl/trace_checker.hpp"

namespace vnetct::reference_impl {
namespace {

using nlohmann::json;

#define VNETCT_KIND_VALUE(name, text) TraceEntryKind::name,
constexpr std::array kEntryKinds{VNETCT_TRACE_ENTRY_KINDS(VNETCT_KIND_VALUE)};
#undef VNETCT_KIND_VALUE

#define VNETCT_BUS_KIND_NAME(name, text) std::pair{#name, BusKind::name},
constexpr std::array kBusKinds{VNETCT_BUS_KINDS(VNETCT_BUS_KIND_NAME)};
#undef VNETCT_BUS_KIND_NAME

struct SchemaError {
    Error<TraceErrc> error;
};

[[noreturn]] void reject(TraceErrc code, const std::string& path, const std::string& what) {
    throw SchemaError{Error<TraceErrc>{code, path + ": " + what}};
}

std::string type_of(const json& value) { return value.type_name(); }

// "entries[3]" + "t_ms" -> "entries[3].t_ms"; top-level fields have no prefix.
std::string join(const std::string& path, const char* key) {
    return path.empty() ? std::string{key} : path + "." + key;
}

const json& require_object(const json& value, const std::string& path) {
    if (!value.is_object()) {
        reject(TraceErrc::WrongType, path, "expected an object, got " + type_of(value));
    }
    return value;
}

// The field, or nullptr when absent or null and optional.
const json* field(const json& object, const std::string& path, const char* key, bool required) {
    const auto found = object.find(key);
    if (found == object.end() || found->is_null()) {
        if (required) {
            reject(TraceErrc::MissingField, join(path, key), "missing");
        }
        return nullptr;
    }
    return &*found;
}

std::string string_field(const json& object, const std::string& path, const char* key,
                         bool required) {
    const json* value = field(object, path, key, required);
    if (value == nullptr) {
        return "";
    }
    if (!value->is_string()) {
        reject(TraceErrc::WrongType, join(path, key), "expected a string, got " + type_of(*value));
    }
    return value->get<std::string>();
}

bool bool_field(const json& object, const std::string& path, const char* key, bool fallback,
                bool required = false) {
    const json* value = field(object, path, key, required);
    if (value == nullptr) {
        return fallback;
    }
    if (!value->is_boolean()) {
        reject(TraceErrc::WrongType, join(path, key),
               "expected a boolean, got " + type_of(*value));
    }
    return value->get<bool>();
}

std::optional<double> number_field(const json& object, const std::string& path, const char* key,
                                   bool required) {
    const json* value = field(object, path, key, required);
    if (value == nullptr) {
        return std::nullopt;
    }
    if (!value->is_number() || !std::isfinite(value->get<double>())) {
        reject(TraceErrc::WrongType, join(path, key),
               "expected a finite number, got " + type_of(*value));
    }
    return value->get<double>();
}

std::vector<std::string> string_list_field(const json& object, const std::string& path,
                                           const char* key) {
    const json* value = field(object, path, key, true);
    const std::string list_path = join(path, key);
    if (!value->is_array()) {
        reject(TraceErrc::WrongType, list_path, "expected an array, got " + type_of(*value));
    }
    std::vector<std::string> strings;
    for (std::size_t index = 0; index < value->size(); ++index) {
        const json& item = (*value)[index];
        if (!item.is_string()) {
            reject(TraceErrc::WrongType, list_path + "[" + std::to_string(index) + "]",
                   "expected a string, got " + type_of(item));
        }
        strings.push_back(item.get<std::string>());
    }
    return strings;
}

DeviceSpec device_spec(const json& value, const std::string& path) {
    require_object(value, path);
    DeviceSpec spec;
    spec.id = string_field(value, path, "id", false);
    spec.driver = string_field(value, path, "driver", true);
    spec.failover = bool_field(value, path, "failover", false);
    spec.failover_pair_id = string_field(value, path, "failover_pair_id", false);
    spec.bus = string_field(value, path, "bus", false);
    spec.multifunction = bool_field(value, path, "multifunction", false);
    spec.network_class = bool_field(value, path, "network_class", true);
    spec.slot = string_field(value, path, "slot", false);
    const std::string bus_kind = string_field(value, path, "bus_kind", true);
    bool known = false;
    for (const auto& [name, kind] : kBusKinds) {
        if (bus_kind == name) {
            spec.bus_kind = kind;
            known = true;
        }
    }
    if (!known) {
        reject(TraceErrc::UnknownBusKind, join(path, "bus_kind"),
               "'" + bus_kind + "' (known: RootPortHotplug, RootBus, ConventionalPci)");
    }
    return spec;
}

TraceEntryKind entry_kind(const std::string& kind, const std::string& path) {
    for (const TraceEntryKind candidate : kEntryKinds) {
        if (kind == to_string(candidate)) {
            return candidate;
        }
    }
    std::string known;
    for (const TraceEntryKind candidate : kEntryKinds) {
        known += (known.empty() ? "" : ", ") + std::string{to_string(candidate)};
    }
    reject(TraceErrc::UnknownKind, join(path, "kind"), "'" + kind + "' (known: " + known + ")");
}

TraceEntry entry(const json& value, const std::string& path) {
    require_object(value, path);
    TraceEntry parsed;
    parsed.raw = value;
    parsed.t_ms = *number_field(value, path, "t_ms", true);
    parsed.kind = entry_kind(string_field(value, path, "kind", true), path);
    switch (parsed.kind) {
        case TraceEntryKind::GuestAck:
            parsed.id = string_field(value, path, "standby", true);
            parsed.standby_bit = bool_field(value, path, "standby_bit", false, true);
            break;
        case TraceEntryKind::GuestReleased:
            parsed.id = string_field(value, path, "primary", true);
            break;
        case TraceEntryKind::DeviceDel:
            parsed.id = string_field(value, path, "id", true);
            break;
        case TraceEntryKind::HotPlug:
            parsed.device = device_spec(*field(value, path, "device", true), join(path, "device"));
            break;
        case TraceEntryKind::IncomingLoaded:
            parsed.ids = string_list_field(value, path, "standbys");
            break;
        case TraceEntryKind::Pci:
            parsed.ids = string_list_field(value, path, "visible");
            break;
        case TraceEntryKind::QmpEvent: {
            parsed.event = string_field(value, path, "name", true);
            const json* data = field(value, path, "data", false);
            parsed.data = data == nullptr ? json::object() : require_object(*data, join(path, "data"));
            break;
        }
        case TraceEntryKind::StartError:
        case TraceEntryKind::Stderr:
            parsed.text = string_field(value, path, "text", true);
            break;
        default:
            break;
    }
    return parsed;
}

constexpr double kMaxTimeoutMs = 365.0 * 24 * 3600 * 1000;

// An optional non-negative duration in milliseconds (rounded down), at most a
// year, at the top level.
std::optional<Milliseconds> timeout_field(const json& object, const char* key) {
    const std::optional<double> timeout = number_field(object, "", key, false);
    if (!timeout) {
        return std::nullopt;
    }
    if (*timeout < 0) {
        reject(TraceErrc::WrongType, key, "negative");
    }
    if (*timeout > kMaxTimeoutMs) {  // beyond it the conversion to an integer count would overflow
        reject(TraceErrc::WrongType, key, "larger than a year (" + std::to_string(static_cast<long long>(kMaxTimeoutMs)) + " ms)");
    }
    return Milliseconds{static_cast<long long>(std::floor(*timeout))};
}

FailoverTrace trace_of(const json& value) {
    const std::string path;
    if (!value.is_object()) {
        reject(TraceErrc::WrongType, "trace", "expected an object, got " + type_of(value));
    }
    FailoverTrace trace;
    const std::string role = string_field(value, path, "role", true);
    if (role == "source") {
        trace.role = Role::Source;
    } else if (role == "target") {
        trace.role = Role::Target;
    } else {
        reject(TraceErrc::UnknownRole, "role", "'" + role + "'");
    }
    trace.unplug_timeout = timeout_field(value, "unplug_timeout_ms");
    trace.cancel_unplug_timeout = timeout_field(value, "cancel_unplug_timeout_ms");
    const json* devices = field(value, path, "devices", true);
    if (!devices->is_array()) {
        reject(TraceErrc::WrongType, "devices", "expected an array, got " + type_of(*devices));
    }
    for (std::size_t index = 0; index < devices->size(); ++index) {
        const std::string device_path = "devices[" + std::to_string(index) + "]";
        DeviceSpec spec = device_spec((*devices)[index], device_path);
        for (const DeviceSpec& other : trace.devices) {
            if (!spec.id.empty() && other.id == spec.id) {
                reject(TraceErrc::DuplicateDevice, device_path + ".id", "'" + spec.id + "'");
            }
        }
        trace.devices.push_back(std::move(spec));
    }
    const json* entries = field(value, path, "entries", true);
    if (!entries->is_array()) {
        reject(TraceErrc::WrongType, "entries", "expected an array, got " + type_of(*entries));
    }
    for (std::size_t index = 0; index < entries->size(); ++index) {
        const std::string entry_path = "entries[" + std::to_string(index) + "]";
        TraceEntry parsed = entry((*entries)[index], entry_path);
        if (!trace.entries.empty() && parsed.t_ms < trace.entries.back().t_ms) {
            reject(TraceErrc::TimeWentBackwards, entry_path + ".t_ms",
                   std::to_string(parsed.t_ms) + " ms after " +
                       std::to_string(trace.entries.back().t_ms) + " ms");
        }
        trace.entries.push_back(std::move(parsed));
    }
    return trace;
}

}  // namespace

TraceResult<FailoverTrace> parse_failover_trace(const nlohmann::json& trace) {
    try {
        return trace_of(trace);
    } catch (SchemaError& failure) {
        return tl::unexpected<Error<TraceErrc>>(std::move(failure.error));
    }
}

}  // namespace vnetct::reference_impl
