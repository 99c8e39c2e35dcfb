// The reference failover model for Python: the `reference` SUT profile drives
// it in process, the trace checker replays real traces against it.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "json_bridge.hpp"
#include "vnetct/reference_impl/failover_model.hpp"
#include "vnetct/reference_impl/trace_checker.hpp"

namespace py = pybind11;
using namespace vnetct::reference_impl;

namespace vnetct::harness {
namespace {

Milliseconds ms(double value) { return Milliseconds(static_cast<long long>(value)); }

#define VNETCT_ENUM_VALUE(name, text) Type::name,
template <typename Type>
struct EnumValues;
template <>
struct EnumValues<BusKind> {
    using Type = BusKind;
    static constexpr std::array values{VNETCT_BUS_KINDS(VNETCT_ENUM_VALUE)};
};
template <>
struct EnumValues<Mutation> {
    using Type = Mutation;
    static constexpr std::array values{VNETCT_FAILOVER_MUTATIONS(VNETCT_ENUM_VALUE)};
};
#undef VNETCT_ENUM_VALUE

// The enumerator named `name` (name_of), or ValueError listing the known names.
template <typename Enum>
Enum by_name(const std::string& name, const char* what) {
    for (const Enum value : EnumValues<Enum>::values) {
        if (name_of(value) == name) {
            return value;
        }
    }
    std::string known;
    for (const Enum value : EnumValues<Enum>::values) {
        known += (known.empty() ? "" : ", ") + std::string(name_of(value));
    }
    throw py::value_error(std::string("unknown ") + what + " '" + name + "' (known: " + known + ")");
}

DeviceSpec device_spec(const py::dict& spec) {
    DeviceSpec device;
    device.id = spec.contains("id") && !spec["id"].is_none() ? spec["id"].cast<std::string>() : "";
    device.driver = spec["driver"].cast<std::string>();
    device.failover = spec.contains("failover") && spec["failover"].cast<bool>();
    if (spec.contains("failover_pair_id") && !spec["failover_pair_id"].is_none()) {
        device.failover_pair_id = spec["failover_pair_id"].cast<std::string>();
    }
    device.bus = spec.contains("bus") ? spec["bus"].cast<std::string>() : "";
    if (spec.contains("bus_kind")) {
        device.bus_kind = by_name<BusKind>(spec["bus_kind"].cast<std::string>(), "bus kind");
    }
    device.multifunction = spec.contains("multifunction") && spec["multifunction"].cast<bool>();
    device.network_class = !spec.contains("network_class") || spec["network_class"].cast<bool>();
    return device;
}

py::list outputs(FailoverHost& host) {
    py::list list;
    for (const Output& output : host.take_outputs()) {
        py::dict entry;
        entry["kind"] = std::string(to_string(output.kind));
        entry["name"] = output.name;
        entry["data"] = to_python(output.data);
        entry["rule"] = output.rule;
        entry["text"] = output.text;
        entry["at_ms"] = static_cast<double>(output.at.count());
        list.append(entry);
    }
    return list;
}

}  // namespace

void bind_model(py::module_& module) {
    module.def("mutation_names", [] {
        std::vector<std::string> names;
        for (const Mutation mutation : EnumValues<Mutation>::values) {
            names.emplace_back(name_of(mutation));
        }
        return names;
    });

    module.def(
        "check_failover_trace",
        [](const py::object& trace) {
            const nlohmann::json parsed = from_python(trace);
            const Verdict verdict = unwrap(check_failover_trace(parsed));
            py::dict result;
            result["conformant"] = verdict.conformant;
            result["notes"] = verdict.notes;
            if (verdict.violation) {
                const Violation& violation = *verdict.violation;
                py::dict entry;
                entry["rule"] = violation.rule;
                entry["sentence"] = violation.sentence;
                entry["entry_index"] = violation.entry_index;
                entry["entry"] = to_python(violation.entry);
                entry["observed"] = violation.observed;
                entry["expected"] = violation.expected;
                entry["at_end_of_trace"] = violation.at_end_of_trace;
                entry["message"] = violation.message();
                result["violation"] = entry;
            } else {
                result["violation"] = py::none();
            }
            return result;
        },
        py::arg("trace"),
        "Replays an observed failover trace against the (unmutated) reference model: "
        "{conformant, violation: {rule, sentence, entry_index, entry, observed, expected, message} | None, notes}.");

    py::class_<FailoverHost>(module, "FailoverModel")
        .def(py::init([](const std::string& role, std::optional<double> unplug_timeout_ms,
                         const std::vector<std::string>& mutation_names,
                         std::optional<double> cancel_unplug_timeout_ms) {
                 ModelOptions options;
                 if (unplug_timeout_ms) {
                     options.unplug_timeout = ms(*unplug_timeout_ms);
                 }
                 if (cancel_unplug_timeout_ms) {
                     options.cancel_unplug_timeout = ms(*cancel_unplug_timeout_ms);
                 }
                 for (const auto& name : mutation_names) {
                     options.mutations.add(by_name<Mutation>(name, "mutation"));
                 }
                 if (role != "source" && role != "target") {
                     throw py::value_error("role must be 'source' or 'target', got '" + role + "'");
                 }
                 return FailoverHost(role == "source" ? Role::Source : Role::Target, options);
             }),
             py::arg("role") = "source", py::arg("unplug_timeout_ms") = py::none(),
             py::arg("mutations") = std::vector<std::string>{},
             py::arg("cancel_unplug_timeout_ms") = py::none())
        .def("cold_plug", [](FailoverHost& self, const py::dict& spec) { unwrap(self.cold_plug(device_spec(spec))); })
        .def("start", [](FailoverHost& self, double now) { unwrap(self.start(ms(now))); })
        .def("hot_plug", [](FailoverHost& self, const py::dict& spec, double now) {
            unwrap(self.hot_plug(device_spec(spec), ms(now)));
        })
        .def("device_del", [](FailoverHost& self, const std::string& id, double now) { unwrap(self.device_del(id, ms(now))); })
        .def("guest_ack_features", [](FailoverHost& self, const std::string& standby, bool bit, double now) {
            unwrap(self.guest_ack_features(standby, bit, ms(now)));
        })
        .def("guest_reset", [](FailoverHost& self, double now) { unwrap(self.guest_reset(ms(now))); })
        .def("guest_released", [](FailoverHost& self, const std::string& id, double now) {
            unwrap(self.guest_released(id, ms(now)));
        })
        .def("tick", [](FailoverHost& self, double now) { unwrap(self.tick(ms(now))); })
        .def("migrate", [](FailoverHost& self, double now) { unwrap(self.migrate(ms(now))); })
        .def("migrate_cancel", [](FailoverHost& self, double now) { unwrap(self.migrate_cancel(ms(now))); })
        .def("migration_failed", [](FailoverHost& self, double now) { unwrap(self.migration_failed(ms(now))); })
        .def("transfer_done", [](FailoverHost& self, double now) { unwrap(self.transfer_done(ms(now))); })
        .def("incoming", [](FailoverHost& self, double now) { unwrap(self.incoming(ms(now))); })
        .def("incoming_loaded", [](FailoverHost& self, const std::vector<std::string>& standbys, double now) {
            unwrap(self.incoming_loaded(standbys, ms(now)));
        })
        .def("take_outputs", &outputs)
        .def_property_readonly("migration_state",
                               [](const FailoverHost& self) { return std::string(to_string(self.migration_state())); })
        .def("primary_state",
             [](const FailoverHost& self, const std::string& id) {
                 return std::string(to_string(unwrap(self.primary_state(id))));
             })
        .def_property_readonly("visible_devices", &FailoverHost::visible_devices)
        .def_property_readonly("guest_running", &FailoverHost::guest_running);
}

}  // namespace vnetct::harness
