// The SR-IOV module (host_agent/sriov) for Python: probe a PF, prepare the VFs
// of a host profile with an undo journal on disk, restore a journal. Requests
// and reports cross as dicts. Its errors raise vnetct_native.SriovError with
// `code` (the SriovErrc name); a restore never raises for an entry it could
// not undo, it lists it under "failures".
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <filesystem>
#include <optional>
#include <string>

#include "error_binding.hpp"
#include "json_bridge.hpp"
#include "vnetct/sriov/journal.hpp"
#include "vnetct/sriov/json_codec.hpp"
#include "vnetct/sriov/setup.hpp"

namespace py = pybind11;
using namespace vnetct::sriov;

namespace vnetct::harness {
namespace {

// The request as the one JSON reading has it (InvalidArgument names a bad key).
SetupRequest request_from(const py::dict& request) { return unwrap(setup_request_from_json(from_python(request))); }

}  // namespace

void bind_sriov(py::module_& module) {
    bind_error<SriovErrc>(module, "SriovError", "An SR-IOV host operation failed; `code` names the error code.");

    module.def(
        "sriov_probe",
        [](const std::string& pf, const std::string& sysfs_root) {
            Sysfs sysfs(sysfs_root);
            py::dict result;
            result["pf"] = pf;
            result["address"] = unwrap(sysfs.pf_address(pf));
            result["total_vfs"] = unwrap(sysfs.total_vfs(pf));
            result["num_vfs"] = unwrap(sysfs.num_vfs(pf));
            result["vfio_pci_loaded"] = sysfs.driver_loaded("vfio-pci");
            return result;
        },
        py::arg("pf"), py::arg("sysfs_root") = "/sys",
        "The PF's PCI address and VF counts; SriovError (NoSuchPf, NotSriov, Malformed) otherwise.");

    module.def(
        "sriov_prepare",
        [](const py::dict& request, const std::string& journal_path, const std::string& sysfs_root,
           const std::string& netns) {
            const SetupRequest setup = request_from(request);
            auto prepared = [&] {
                py::gil_scoped_release release;
                Sysfs sysfs(sysfs_root);
                VfLink link(netns);
                Journal journal(journal_path);
                return prepare(setup, sysfs, link, journal);
            }();
            return to_python(prepared_to_json(unwrap(std::move(prepared))));
        },
        py::arg("request"), py::arg("journal_path"), py::arg("sysfs_root") = "/sys", py::arg("netns") = "",
        "Prepares the VFs (vnetct.host_profile.HostProfile.setup_request()); every change is in the journal file "
        "first. On SriovError the changes made so far stand: call sriov_restore.");

    module.def(
        "sriov_restore",
        [](const std::string& journal_path, const std::string& sysfs_root, const std::string& netns) {
            if (!std::filesystem::exists(journal_path)) {
                return to_python(restore_report_to_json({}, Journal()));
            }
            auto journal = unwrap(Journal::load(journal_path));
            Journal::Report report;
            {
                py::gil_scoped_release release;
                Sysfs sysfs(sysfs_root);
                VfLink link(netns);
                report = journal.restore(sysfs, link);
            }
            return to_python(restore_report_to_json(report, journal));
        },
        py::arg("journal_path"), py::arg("sysfs_root") = "/sys", py::arg("netns") = "",
        "Undoes the journal's entries in reverse; {'undone': [...], 'failures': [...], 'left': N}. "
        "No journal file: nothing to undo.");
}

}  // namespace vnetct::harness
