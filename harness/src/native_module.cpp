// vnetct_native: the one place where C++ error values become Python exceptions.
//
// Every Result<T, Errc> is unwrapped with unwrap() (error_binding.hpp); an
// error raises the type bound for its enum (HostError, its subclass
// HostTimeout for deadlines, ModelError, LiveTapError here; SriovError,
// TeamingError, GroupIdError beside their bindings) whose `code` attribute is
// the error code's name and whose message is the error's sentence plus detail.
// Blocking calls release the GIL.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <span>
#include <string>

#include "vnetct/host_agent/process.hpp"
#include "vnetct/host_agent/qemu_command.hpp"
#include "vnetct/host_agent/topology.hpp"
#include "vnetct/livetap/errors.hpp"
#include "vnetct/livetap/transfer_config.hpp"
#include "vnetct/reference_impl/failover_model.hpp"
#include "vnetct/reference_impl/rules.hpp"
#include "vnetct/reference_impl/trace_checker.hpp"
#include "interruptible.hpp"
#include "json_bridge.hpp"
#include "qmp_bindings.hpp"
#include "rule_list.hpp"

namespace py = pybind11;
using namespace vnetct::host_agent;

namespace vnetct::harness {

// The paced UDP stream and its analysis (traffic_bindings.cpp).
void bind_traffic(py::module_& module);
// The SR-IOV set-up of --profile vf (sriov_bindings.cpp).
void bind_sriov(py::module_& module);
// libvirt <teaming> checks (teaming_bindings.cpp).
void bind_teaming(py::module_& module);
// failover-group-id (groupid_bindings.cpp).
void bind_groupid(py::module_& module);
// The QMP fault interposer (interposer_bindings.cpp).
void bind_interposer(py::module_& module);

double checked_seconds(double seconds, const char* argument) {
    if (std::isnan(seconds) || seconds < 0) {
        char given[32];
        std::snprintf(given, sizeof given, "%g", seconds);
        throw py::value_error(std::string(argument) + " must be a number of seconds >= 0, got " + given);
    }
    return std::min(seconds, max_timeout_seconds);
}

Deadline deadline_in(double seconds, const char* argument) {
    return std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                  std::chrono::duration<double>(checked_seconds(seconds, argument)));
}

void register_errors(py::module_& module) {
    bind_error<HostErrc>(module, "HostError", "A host-side operation failed; `code` names the error code.");
    bind_error_code(module, HostErrc::Timeout, "HostTimeout",
                    "A deadline passed; the message says what was awaited.");
    bind_error<vnetct::reference_impl::ModelErrc, vnetct::reference_impl::TraceErrc>(
        module, "ModelError", "The reference model refused an input; `code` names the error code.");
    bind_error<vnetct::livetap::LivetapErrc>(
        module, "LiveTapError", "A live-TAP configuration the rules refuse; `code` names the error code.");
}

}  // namespace vnetct::harness

using namespace vnetct::harness;

PYBIND11_MODULE(vnetct_native, module) {
    module.doc() = "vnetct's native core: QMP and guest agent clients, QEMU launcher, topology, rules.";
    register_errors(module);

    // --- rules (reference_impl: every table) ----------------------------------
    module.def("rules", [] { return rule_list(vnetct::reference_impl::all_rules()); },
               "Every rule of every table as {'id', 'area', 'sentence'}, in table order.");
    // The LT-CFG decisions (transfer_config.hpp).
    module.def(
        "livetap_transfer_decision",
        [](bool migration_parameter, bool device_option, bool unix_channel) {
            py::dict decision;
            decision["transfers_fds"] =
                vnetct::livetap::transfers_fds({migration_parameter, device_option, unix_channel});
            return decision;
        },
        py::arg("migration_parameter"), py::arg("device_option"), py::arg("unix_channel"),
        "LT-CFG-01/04: {'transfers_fds': bool}.");
    module.def(
        "livetap_check_target",
        [](bool migration_parameter, bool device_option, bool unix_channel, bool target_waits_for_fds) {
            const vnetct::livetap::TransferConfig config{migration_parameter, device_option, unix_channel};
            unwrap(vnetct::livetap::check_target(config, target_waits_for_fds));
        },
        py::arg("migration_parameter"), py::arg("device_option"), py::arg("unix_channel"),
        py::arg("target_waits_for_fds") = true,
        "LT-CFG-03: None, or LiveTapError (NoIncomingFds) saying why no fds come.");
    module.def(
        "livetap_check_tap_netdev",
        [](bool incoming_fds, bool ifname, bool vnet_hdr, bool fd) {
            unwrap(vnetct::livetap::check_tap_netdev({incoming_fds, ifname, vnet_hdr, fd}));
        },
        py::arg("incoming_fds"), py::arg("ifname") = false, py::arg("vnet_hdr") = false, py::arg("fd") = false,
        "LT-CFG-02: None, or LiveTapError (ConflictingOptions) naming every conflicting option.");

    // --- argv building ------------------------------------------------------
    module.def("escape_option_value", &escape_option_value);
    module.def("option_list", [](const std::string& driver, const Properties& properties) {
        return unwrap(option_list(driver, properties));
    });
    module.def("shell_quote", &shell_quote);

    // --- processes ----------------------------------------------------------
    py::class_<ExitStatus>(module, "ExitStatus")
        .def_readonly("code", &ExitStatus::code)
        .def_readonly("signal", &ExitStatus::signal)
        .def("describe", &ExitStatus::describe)
        .def("__repr__", &ExitStatus::describe);

    py::class_<Process>(module, "Process")
        .def_static(
            "spawn",
            [](std::vector<std::string> argv, std::string stdout_path, std::string stderr_path, std::string netns,
               std::vector<int> pass_fds) {
                return unwrap(Process::spawn(SpawnOptions{std::move(argv), std::move(stdout_path),
                                                          std::move(stderr_path), std::move(netns),
                                                          std::move(pass_fds)}));
            },
            py::arg("argv"), py::arg("stdout_path") = "/dev/null", py::arg("stderr_path") = "/dev/null",
            py::arg("netns") = "", py::arg("pass_fds") = std::vector<int>{})
        .def_property_readonly("pid", &Process::pid)
        .def_property_readonly("pgid", &Process::pgid)
        .def("poll", &Process::poll)
        .def(
            "wait",
            [](Process& self, double timeout) {
                const ClientTurn turn(&self, "wait");
                const auto deadline = deadline_in(timeout);
                return unwrap(interruptible_call([&] { return self.wait(deadline); }));
            },
            py::arg("timeout"))
        .def(
            "terminate",
            [](Process& self, double grace) {
                return unwrap(self.terminate(
                    std::chrono::milliseconds(static_cast<long>(checked_seconds(grace, "grace") * 1000))));
            },
            py::arg("grace") = 5.0, py::call_guard<py::gil_scoped_release>());

    module.def(
        "run_command",
        [](const std::vector<std::string>& argv, double timeout) {
            const auto deadline = deadline_in(timeout);
            auto output = unwrap(interruptible_call([&] { return run_command(argv, deadline); }));
            return py::make_tuple(output.status, output.output);
        },
        py::arg("argv"), py::arg("timeout") = 30.0);

    // --- topology -----------------------------------------------------------
    py::class_<Topology>(module, "Topology")
        .def_static(
            "create",
            [](std::string netns, std::string prefix, int taps, std::string peer_address) {
                return unwrap(Topology::create(TopologySpec{std::move(netns), std::move(prefix), taps,
                                                            std::move(peer_address)}));
            },
            py::arg("netns"), py::arg("device_prefix"), py::arg("taps") = 2,
            py::arg("peer_address") = "198.18.0.1/24", py::call_guard<py::gil_scoped_release>())
        .def_property_readonly("netns", &Topology::netns)
        .def_property_readonly("bridge", &Topology::bridge)
        .def_property_readonly("taps", &Topology::taps)
        .def_property_readonly("peer_interface", &Topology::peer_interface)
        .def_property_readonly("peer_address", &Topology::peer_address)
        .def("describe", [](const Topology& self) { return unwrap(self.describe()); },
             py::call_guard<py::gil_scoped_release>())
        .def("destroy", [](Topology& self) { unwrap(self.destroy()); }, py::call_guard<py::gil_scoped_release>());

    module.def("list_netns", &list_netns, py::arg("prefix"));
    module.def("sweep_netns", [](const std::string& prefix) { return unwrap(sweep_netns(prefix)); },
               py::call_guard<py::gil_scoped_release>());
    module.def(
        "open_socket_in_netns",
        [](const std::string& netns, int domain, int type, int protocol) {
            return unwrap(open_socket_in_netns(netns, domain, type, protocol));
        },
        py::arg("netns"), py::arg("domain"), py::arg("type"), py::arg("protocol") = 0);
    module.def(
        "open_tap_in_netns",
        [](const std::string& netns, const std::string& name) { return unwrap(open_tap_in_netns(netns, name)); },
        py::arg("netns"), py::arg("name"), py::call_guard<py::gil_scoped_release>());

    bind_clients(module);
    bind_model(module);
    bind_traffic(module);
    bind_sriov(module);
    bind_teaming(module);
    bind_groupid(module);
    bind_interposer(module);
}
