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
#include "vnetct/sriov/journal.hpp"
#include "vnetct/sriov/setup.hpp"

namespace py = pybind11;
using namespace vnetct::sriov;

namespace vnetct::harness {
namespace {

template <typename T>
std::optional<T> optional_item(const py::dict& entry, const char* key) {
    if (!entry.contains(key) || entry[key].is_none()) {
        return std::nullopt;
    }
    return entry[key].cast<T>();
}

SetupRequest request_from(const py::dict& request) {
    SetupRequest setup;
    setup.pf = request["pf"].cast<std::string>();
    setup.num_vfs = request["num_vfs"].cast<int>();
    setup.bind_vfio = request["bind_vfio"].cast<bool>();
    for (const auto& item : request["vfs"].cast<py::list>()) {
        const auto entry = item.cast<py::dict>();
        VfRequest vf;
        vf.index = entry["index"].cast<int>();
        vf.settings.mac = optional_item<std::string>(entry, "mac");
        vf.settings.vlan = optional_item<int>(entry, "vlan");
        vf.settings.qos = optional_item<int>(entry, "qos").value_or(0);
        vf.settings.trust = optional_item<bool>(entry, "trust");
        vf.settings.spoofchk = optional_item<bool>(entry, "spoofchk");
        setup.vfs.push_back(std::move(vf));
    }
    return setup;
}

py::dict report_dict(const Journal::Report& report, const Journal& journal) {
    py::dict result;
    result["undone"] = report.undone;
    result["failures"] = report.failures;
    result["left"] = journal.entries().size();
    return result;
}

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
            py::list vfs;
            for (const auto& vf : unwrap(std::move(prepared))) {
                py::dict entry;
                entry["index"] = vf.index;
                entry["address"] = vf.address;
                entry["iommu_group"] = vf.iommu_group;
                entry["driver"] = vf.driver;
                vfs.append(entry);
            }
            return vfs;
        },
        py::arg("request"), py::arg("journal_path"), py::arg("sysfs_root") = "/sys", py::arg("netns") = "",
        "Prepares the VFs (vnetct.host_profile.HostProfile.setup_request()); every change is in the journal file "
        "first. On SriovError the changes made so far stand: call sriov_restore.");

    module.def(
        "sriov_restore",
        [](const std::string& journal_path, const std::string& sysfs_root, const std::string& netns) {
            if (!std::filesystem::exists(journal_path)) {
                py::dict nothing;
                nothing["undone"] = py::list();
                nothing["failures"] = py::list();
                nothing["left"] = 0;
                return nothing;
            }
            auto journal = unwrap(Journal::load(journal_path));
            Journal::Report report;
            {
                py::gil_scoped_release release;
                Sysfs sysfs(sysfs_root);
                VfLink link(netns);
                report = journal.restore(sysfs, link);
            }
            return report_dict(report, journal);
        },
        py::arg("journal_path"), py::arg("sysfs_root") = "/sys", py::arg("netns") = "",
        "Undoes the journal's entries in reverse; {'undone': [...], 'failures': [...], 'left': N}. "
        "No journal file: nothing to undo.");
}

}  // namespace vnetct::harness
