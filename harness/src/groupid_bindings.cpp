// failover-group-id (reference_impl/groupid) for the cases: config-space
// images, their decoding (None or the id; a malformed image raises
// GroupIdError with the walker's code and message) and the pairing decision.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "error_binding.hpp"
#include "vnetct/groupid/groupid.hpp"

namespace py = pybind11;

namespace vnetct::harness {

namespace {

std::vector<std::uint8_t> bytes_of(const py::bytes& data) {
    const std::string text = data;
    return {text.begin(), text.end()};
}

py::bytes as_bytes(const std::vector<std::uint8_t>& data) {
    return py::bytes(reinterpret_cast<const char*>(data.data()), data.size());
}

}  // namespace

void bind_groupid(py::module_& module) {
    bind_error<groupid::GroupIdErrc>(module, "GroupIdError",
                                     "A config space whose capabilities cannot be read (FO-GRP-05); `code` names "
                                     "the error code.");
    module.def("groupid_encode_nic_config", [](std::optional<std::uint64_t> id) {
        return as_bytes(groupid::encode_nic_config(id));
    });
    module.def("groupid_encode_bridge_config", [](std::optional<std::uint64_t> id) {
        return as_bytes(groupid::encode_bridge_config(id));
    });
    module.def("groupid_nic", [](const py::bytes& config) { return unwrap(groupid::nic_group_id(bytes_of(config))); });
    module.def("groupid_bridge",
               [](const py::bytes& config) { return unwrap(groupid::bridge_group_id(bytes_of(config))); });
    module.def("groupid_format", &groupid::format_group_id);
    module.def("groupid_decide_pairing", [](const std::string& standby_mac, std::optional<std::uint64_t> standby_group,
                                            const std::string& primary_mac, std::optional<std::uint64_t> primary_group) {
        const auto decision = groupid::decide_pairing(standby_mac, standby_group, primary_mac, primary_group);
        py::dict result;
        result["paired"] = decision.paired;
        result["by"] = decision.by;
        result["why"] = decision.why;
        return result;
    });
}

}  // namespace vnetct::harness
