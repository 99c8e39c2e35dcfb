// The paced UDP stream and its analysis for Python. Reports cross as plain
// JSON-able dicts (times in ns as ints, durations in ms as floats), so a case
// can save them as they are.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "json_bridge.hpp"
#include "vnetct/host_agent/stream_analysis.hpp"
#include "vnetct/host_agent/udp_stream.hpp"

namespace py = pybind11;
using namespace vnetct::host_agent;

namespace vnetct::harness {
namespace {

using PhaseArguments = std::vector<std::pair<std::string, std::int64_t>>;
using ArrivalArguments = std::vector<std::pair<std::int64_t, std::int64_t>>;

constexpr auto wait_slice = std::chrono::milliseconds(100);  // as host_agent::wait_slice

double to_ms(std::int64_t ns) { return static_cast<double>(ns) / 1e6; }

py::object ms_or_none(const std::optional<std::int64_t>& ns) {
    return ns ? py::object(py::float_(to_ms(*ns))) : py::object(py::none());
}

py::dict phase_dict(const PhaseReport& phase) {
    py::list windows;
    for (const LossWindow& window : phase.loss_windows) {
        py::dict entry;
        entry["first_seq"] = window.first_seq;
        entry["last_seq"] = window.last_seq;
        entry["count"] = window.count;
        entry["start_ns"] = window.start_ns;
        entry["end_ns"] = window.end_ns;
        entry["duration_ms"] = to_ms(window.duration_ns());
        windows.append(entry);
    }
    const auto longest = phase.longest_loss_window();
    py::dict entry;
    entry["name"] = phase.name;
    entry["start_ns"] = phase.start_ns;
    entry["end_ns"] = phase.end_ns;
    entry["duration_ms"] = to_ms(phase.duration_ns());
    entry["sent"] = phase.sent;
    entry["received"] = phase.received;
    entry["lost"] = phase.lost;
    entry["duplicates"] = phase.duplicates;
    entry["reordered"] = phase.reordered;
    entry["longest_loss_window_ms"] = longest ? to_ms(longest->duration_ns()) : 0.0;
    entry["loss_windows"] = windows;
    return entry;
}

py::dict report_dict(const StreamReport& report) {
    py::list phases;
    for (const PhaseReport& phase : report.phases) {
        phases.append(phase_dict(phase));
    }
    py::dict overall = phase_dict(report.overall);
    overall["rate_asked_pps"] =
        report.rate_asked_pps > 0 ? py::object(py::float_(report.rate_asked_pps)) : py::object(py::none());
    overall["rate_achieved_pps"] = report.rate_achieved_pps;
    overall["rtt_median_ms"] = ms_or_none(report.rtt_median_ns);
    overall["rtt_max_ms"] = ms_or_none(report.rtt_max_ns);
    py::dict result;
    result["phases"] = phases;
    result["overall"] = overall;
    return result;
}

std::vector<StreamPhase> to_phases(const PhaseArguments& phases) {
    std::vector<StreamPhase> converted;
    converted.reserve(phases.size());
    for (const auto& [name, start_ns] : phases) {
        converted.push_back(StreamPhase{name, start_ns});
    }
    return converted;
}

std::vector<EchoArrival> to_arrivals(const ArrivalArguments& arrivals) {
    std::vector<EchoArrival> converted;
    converted.reserve(arrivals.size());
    for (std::size_t i = 0; i < arrivals.size(); ++i) {
        const auto [seq, arrival_ns] = arrivals[i];
        if (seq < 0 || seq > std::int64_t{std::numeric_limits<std::uint32_t>::max()}) {
            throw Failure<HostErrc>(Error<HostErrc>{HostErrc::InvalidArgument, "arrival #" + std::to_string(i) + " has seq " +
                                                                             std::to_string(seq) +
                                                                             ", not a 32-bit sequence number"});
        }
        converted.push_back(EchoArrival{static_cast<std::uint32_t>(seq), arrival_ns});
    }
    return converted;
}

py::dict analyze(const std::vector<std::int64_t>& sent_ns, const std::vector<EchoArrival>& arrivals,
                 const PhaseArguments& phases, std::int64_t end_ns, double rate_asked_pps) {
    auto report = [&] {
        py::gil_scoped_release release;
        return analyze_stream(sent_ns, arrivals, to_phases(phases), end_ns, rate_asked_pps);
    }();
    return report_dict(unwrap(std::move(report)));
}

// Waits in slices of at most 100 ms without the GIL, checking for Ctrl-C in between.
template <typename Wait>
bool interruptible_wait(double timeout, Wait&& wait) {
    const auto deadline = deadline_in(timeout);
    for (;;) {
        const auto slice_end = std::min(deadline, std::chrono::steady_clock::now() + wait_slice);
        bool reached = false;
        {
            py::gil_scoped_release release;
            reached = wait(slice_end);
        }
        if (reached || std::chrono::steady_clock::now() >= deadline) {
            return reached;
        }
        if (PyErr_CheckSignals() != 0) {
            throw py::error_already_set();
        }
    }
}

void stop(UdpStream& stream, double drain_s) {
    const auto drain = std::chrono::milliseconds(static_cast<std::int64_t>(checked_seconds(drain_s, "drain_s") * 1000));
    auto stopped = [&] {
        py::gil_scoped_release release;
        return stream.stop(drain);
    }();
    unwrap(std::move(stopped));
}

}  // namespace

void bind_traffic(py::module_& module) {
    py::class_<UdpStream>(module, "UdpStream",
                          "A paced, sequence-numbered UDP stream to an echo server, recording every echo. "
                          "Takes ownership of `fd` (an unconnected AF_INET SOCK_DGRAM socket) and closes it, "
                          "also when the arguments are refused.")
        .def(py::init([](int fd, const std::string& address, int port, double rate_pps, std::int64_t payload_bytes,
                         std::int64_t count) {
                 return unwrap(UdpStream::create(fd, UdpStreamSpec{address, port, rate_pps, payload_bytes, count}));
             }),
             py::arg("fd"), py::arg("address"), py::arg("port"), py::arg("rate_pps"), py::arg("payload_bytes") = 64,
             py::arg("count") = 0)
        .def("start", [](UdpStream& self) { unwrap(self.start()); })
        .def("stop_sending", &UdpStream::stop_sending, py::call_guard<py::gil_scoped_release>())
        .def("stop", &stop, py::arg("drain_s") = 1.0,
             "Stops sending, keeps receiving for drain_s, then stops. Idempotent.")
        .def(
            "wait_received",
            [](const UdpStream& self, std::uint64_t count, double timeout) {
                return interruptible_wait(timeout, [&](auto until) { return self.wait_received(count, until); });
            },
            py::arg("count"), py::arg("timeout"), "Whether `count` distinct packets were echoed within `timeout` s.")
        .def(
            "wait_sent",
            [](const UdpStream& self, std::uint64_t count, double timeout) {
                return interruptible_wait(timeout, [&](auto until) { return self.wait_sent(count, until); });
            },
            py::arg("count"), py::arg("timeout"), "Whether `count` datagrams were sent within `timeout` s.")
        .def(
            "wait_sending_done",
            [](const UdpStream& self, double timeout) {
                return interruptible_wait(timeout, [&](auto until) { return self.wait_sending_done(until); });
            },
            py::arg("timeout"), "Whether the sender finished (count sent, or stopped) within `timeout` s.")
        .def_property_readonly("sent", &UdpStream::sent)
        .def_property_readonly("received", &UdpStream::received)
        .def_property_readonly("foreign", &UdpStream::foreign)
        .def_property_readonly("stream_id", &UdpStream::stream_id)
        .def_property_readonly("rate_pps", [](const UdpStream& self) { return self.spec().rate_pps; })
        .def_property_readonly(
            "send_errors",
            [](const UdpStream& self) {
                py::dict errors;
                for (const auto& [error, count] : self.send_errors()) {
                    const char* name = ::strerrorname_np(error);
                    errors[py::str(name != nullptr ? name : std::to_string(error))] = count;
                }
                return errors;
            },
            "Failed sends by errno name, e.g. {'ENOBUFS': 3}.")
        .def("sent_times", &UdpStream::sent_times, "sent_ns of every packet, indexed by seq.")
        .def(
            "arrivals",
            [](const UdpStream& self) {
                const std::vector<EchoArrival> arrivals = self.arrivals();
                py::list list(arrivals.size());
                for (std::size_t i = 0; i < arrivals.size(); ++i) {
                    list[i] = py::make_tuple(arrivals[i].seq, arrivals[i].arrival_ns);
                }
                return list;
            },
            "(seq, arrival_ns) of every echo in arrival order, duplicates kept.")
        .def(
            "analyze",
            [](const UdpStream& self, const PhaseArguments& phases, std::int64_t end_ns) {
                return analyze(self.sent_times(), self.arrivals(), phases, end_ns, self.spec().rate_pps);
            },
            py::arg("phases"), py::arg("end_ns"),
            "The report per phase ([(name, start_ns)], sorted) and overall, up to end_ns, as a dict.")
        .def(
            "__enter__", [](UdpStream& self) -> UdpStream& { return self; }, py::return_value_policy::reference)
        .def(
            "__exit__", [](UdpStream& self, const py::args&) { stop(self, 0.0); },
            "Stops at once (no drain); call stop(drain_s) in the block to collect late echoes.");

    module.def(
        "analyze_stream",
        [](const std::vector<std::int64_t>& sent_ns, const ArrivalArguments& arrivals, const PhaseArguments& phases,
           std::int64_t end_ns,
           double rate_asked_pps) { return analyze(sent_ns, to_arrivals(arrivals), phases, end_ns, rate_asked_pps); },
        py::arg("sent_ns"), py::arg("arrivals"), py::arg("phases"), py::arg("end_ns"), py::arg("rate_asked_pps") = 0.0,
        "The stream report of recorded vectors: sent_ns by seq, [(seq, arrival_ns)], [(name, start_ns)].");
}

}  // namespace vnetct::harness
