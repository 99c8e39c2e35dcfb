// libvirt <teaming> checks (reference_impl/teaming) for `vnetct check-config`
// and the cases: a bad file raises vnetct_native.TeamingError (code, message).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>

#include "error_binding.hpp"
#include "vnetct/teaming/teaming.hpp"

namespace py = pybind11;

namespace vnetct::harness {

namespace {

py::dict verdict_dict(const teaming::Domain& domain, const teaming::Verdict& verdict) {
    py::list violations;
    for (const auto& violation : verdict.violations) {
        py::dict entry;
        entry["rule"] = violation.rule;
        entry["line"] = violation.line;
        entry["element"] = violation.element;
        entry["attribute"] = violation.attribute;
        entry["message"] = violation.message;
        violations.append(entry);
    }
    py::dict result;
    result["file"] = domain.file;
    result["machine"] = domain.machine;
    result["interfaces"] = domain.interfaces.size();
    result["teamed"] = std::count_if(domain.interfaces.begin(), domain.interfaces.end(),
                                     [](const auto& nic) { return nic.teaming_type.has_value(); });
    result["violations"] = violations;
    result["argv"] = verdict.argv;
    result["conformant"] = verdict.conformant();
    return result;
}

}  // namespace

void bind_teaming(py::module_& module) {
    bind_error<teaming::TeamingErrc>(module, "TeamingError",
                                     "A domain XML that cannot be checked; `code` names the error code.");
    module.def("teaming_check_file", [](const std::string& path) {
        const auto domain = unwrap(teaming::parse_domain_file(path));
        return verdict_dict(domain, teaming::check(domain));
    });
    module.def("teaming_check_text", [](const std::string& xml, const std::string& name) {
        const auto domain = unwrap(teaming::parse_domain(xml, name));
        return verdict_dict(domain, teaming::check(domain));
    });
}
}  // namespace vnetct::harness
