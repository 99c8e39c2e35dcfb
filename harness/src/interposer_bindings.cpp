// The QMP fault interposer (host_agent/qmp_interposer.hpp) for the harness:
// a plan as a dict, the action log as a list of dicts. Errors raise HostError
// (a bad plan: code "InvalidArgument", naming the rule index and field).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "json_bridge.hpp"
#include "vnetct/host_agent/qmp_interposer.hpp"

namespace py = pybind11;
using vnetct::host_agent::QmpInterposer;

namespace vnetct::harness {

void bind_interposer(py::module_& module) {
    py::class_<QmpInterposer>(module, "QmpInterposer",
                              "Sits between a QMP client and QEMU's monitor socket and drops, delays or forges "
                              "events and edits or forges replies, following a fault plan.")
        .def_static(
            "start",
            [](const std::string& listen_path, const std::string& upstream_path, const py::dict& plan,
               const std::string& log_path) {
                const nlohmann::json parsed = from_python(plan);
                py::gil_scoped_release release;
                return unwrap(QmpInterposer::start(listen_path, upstream_path, parsed, log_path));
            },
            py::arg("listen_path"), py::arg("upstream_path"), py::arg("plan"), py::arg("log_path") = "",
            "Checks the plan, listens on listen_path and serves on a thread; clients are relayed to "
            "upstream_path (QEMU's QMP socket).")
        .def(
            "actions", [](const QmpInterposer& self) { return to_python(self.actions()); },
            "The action log: [{'host_ns', 'rule', 'action', 'message', ...}], oldest first.")
        .def("stop", &QmpInterposer::stop, py::call_guard<py::gil_scoped_release>(),
             "Closes every connection and the listening socket and joins the thread. Idempotent.")
        .def_property_readonly("listen_path", &QmpInterposer::listen_path)
        .def("__enter__", [](QmpInterposer& self) -> QmpInterposer& { return self; },
             py::return_value_policy::reference)
        .def(
            "__exit__", [](QmpInterposer& self, const py::args&) { self.stop(); },
            py::call_guard<py::gil_scoped_release>());
}

}  // namespace vnetct::harness
