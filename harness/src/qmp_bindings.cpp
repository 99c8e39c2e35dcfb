#include "qmp_bindings.hpp"

#include <pybind11/stl.h>

#include <algorithm>
#include <cstdio>
#include <chrono>

#include "interruptible.hpp"
#include "json_bridge.hpp"
#include "vnetct/host_agent/guest_agent_client.hpp"
#include "vnetct/host_agent/qmp_client.hpp"

namespace py = pybind11;
using namespace vnetct::host_agent;

namespace vnetct::harness {

py::object to_python(const nlohmann::json& value) {
    // Leaked on purpose: must not be released after the interpreter finalized.
    static py::object& loads = *new py::object(py::module_::import("json").attr("loads"));
    return loads(value.dump());
}

nlohmann::json from_python(const py::handle& value) {
    static py::object& dumps = *new py::object(py::module_::import("json").attr("dumps"));
    if (value.is_none()) {
        return nullptr;
    }
    return nlohmann::json::parse(dumps(value).cast<std::string>());
}

namespace {

py::dict qmp_event_dict(const QmpEvent& event) {
    py::dict entry;
    entry["name"] = event.name;
    entry["data"] = to_python(event.data);
    entry["qemu_timestamp"] = event.qemu_timestamp;
    entry["host_ns"] = event.host_ns;
    entry["index"] = event.index;
    return entry;
}

py::dict agent_event_dict(const AgentEvent& event) {
    py::dict entry;
    entry["name"] = event.name;
    entry["data"] = to_python(event.data);
    entry["host_ns"] = event.host_ns;
    entry["index"] = event.index;
    return entry;
}

// A wait that ends in Timeout says how long was waited in total.
template <typename T>
HostResult<T> with_total(HostResult<T> result, double timeout) {
    if (!result && result.error().code == HostErrc::Timeout) {
        char total[32];
        std::snprintf(total, sizeof total, "%.1f", timeout);
        result.error().detail = "waited " + std::string(total) + " s in total; " + result.error().detail;
    }
    return result;
}

// The API both line-JSON clients share: connect, events, wait_event, pump.
template <typename Client, typename ToDict>
void bind_event_api(py::class_<Client>& cls, ToDict to_dict) {
    cls.def_static(
           "connect",
           [](const std::string& socket_path, const std::string& transcript_path, double timeout) {
               return unwrap(interruptible_call(
                   [&] { return Client::connect(socket_path, transcript_path, deadline_in(timeout)); }));
           },
           py::arg("socket_path"), py::arg("transcript_path") = "", py::arg("timeout") = 30.0)
        .def_property_readonly("events",
                               [to_dict](const Client& self) {
                                   const ClientTurn turn(&self, "events");
                                   py::list events;
                                   for (const auto& event : self.events()) {
                                       events.append(to_dict(event));
                                   }
                                   return events;
                               })
        .def(
            "wait_event",
            [to_dict](Client& self, const std::string& name, const py::object& match, std::size_t from_index,
                      double timeout) {
                const ClientTurn turn(&self, "wait_event " + name);
                const nlohmann::json pattern = from_python(match);
                const auto deadline = deadline_in(timeout);
                auto event = unwrap(with_total(
                    interruptible_call([&] { return self.wait_event(name, pattern, from_index, deadline); }), timeout));
                return to_dict(event);
            },
            py::arg("name"), py::arg("match") = py::none(), py::arg("from_index") = 0, py::arg("timeout") = 30.0)
        .def(
            "pump",
            [](Client& self, double timeout) {
                const ClientTurn turn(&self, "pump");
                const auto deadline = deadline_in(timeout);
                return unwrap(interruptible_call([&] { return self.pump(deadline); }));
            },
            py::arg("timeout"))
        .def_property_readonly("closed", &Client::closed);
}

}  // namespace

void bind_clients(py::module_& module) {
    py::class_<QmpClient> qmp(module, "QmpClient");
    bind_event_api(qmp, qmp_event_dict);
    qmp.def_property_readonly("greeting", [](const QmpClient& self) { return to_python(self.greeting()); })
        .def(
            "execute",
            [](QmpClient& self, const std::string& command, const py::object& arguments, double timeout) {
                const ClientTurn turn(&self, "execute " + command);
                const nlohmann::json args = from_python(arguments);
                const auto deadline = deadline_in(timeout);
                auto reply = unwrap(interruptible_call([&] { return self.execute(command, args, deadline); }));
                return to_python(reply);
            },
            py::arg("command"), py::arg("arguments") = py::none(), py::arg("timeout") = 30.0);

    py::class_<GuestAgentClient> agent(module, "GuestAgentClient");
    bind_event_api(agent, agent_event_dict);
    agent
        .def(
            "wait_hello",
            [](GuestAgentClient& self, double timeout) {
                const ClientTurn turn(&self, "wait_hello");
                const auto deadline = deadline_in(timeout);
                auto hello = unwrap(with_total(interruptible_call([&] { return self.wait_hello(deadline); }), timeout));
                return to_python(hello);
            },
            py::arg("timeout"))
        .def(
            "request",
            [](GuestAgentClient& self, const std::string& command, const py::object& arguments, double timeout) {
                const ClientTurn turn(&self, "request " + command);
                const nlohmann::json args = from_python(arguments);
                const auto deadline = deadline_in(timeout);
                auto reply = unwrap(interruptible_call([&] { return self.request(command, args, deadline); }));
                return to_python(reply);
            },
            py::arg("command"), py::arg("arguments") = py::none(), py::arg("timeout") = 30.0);
}

}  // namespace vnetct::harness
