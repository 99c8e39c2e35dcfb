// The SR-IOV set-up's requests and answers as JSON: what the pybind11 module
// takes from Python (as dicts) and what the host agent daemon takes over its
// stream. One reading of a request, with every field checked: a wrong type or
// a missing key is InvalidArgument naming the key.
//   request: {"pf": "eth0", "num_vfs": 2, "bind_vfio": true,
//             "vfs": [{"index": 0, "mac"?: "..", "vlan"?: N, "qos"?: N, "trust"?: b, "spoofchk"?: b}]}
#pragma once

#include <vector>

#include <nlohmann/json.hpp>

#include "vnetct/sriov/journal.hpp"
#include "vnetct/sriov/setup.hpp"

namespace vnetct::sriov {

[[nodiscard]] SriovResult<SetupRequest> setup_request_from_json(const nlohmann::json& request);
// [{"index", "address", "iommu_group", "driver"}, ...]
[[nodiscard]] nlohmann::json prepared_to_json(const std::vector<PreparedVf>& vfs);
// {"undone": [...], "failures": [...], "left": N}
[[nodiscard]] nlohmann::json restore_report_to_json(const Journal::Report& report, const Journal& journal);

}  // namespace vnetct::sriov
