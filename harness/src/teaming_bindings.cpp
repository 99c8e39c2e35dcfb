// libvirt <teaming> checks (reference_impl/teaming) for `vnetct check-config`
// and the cases: a bad file raises vnetct_native.TeamingError (code, message).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "rule_list.hpp"

#include <algorithm>

#include "vnetct/teaming/rules.hpp"
#include "vnetct/teaming/teaming.hpp"

namespace py = pybind11;

namespace vnetct::harness {

namespace {

std::string code_name(teaming::TeamingErrc code) {
    switch (code) {
#define VNETCT_TEAMING_CODE_NAME(name, sentence) \
    case teaming::TeamingErrc::name:             \
        return #name;
        VNETCT_TEAMING_ERRORS(VNETCT_TEAMING_CODE_NAME)
#undef VNETCT_TEAMING_CODE_NAME
    }
    return "Unknown";
}

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
    static py::object error = py::reinterpret_steal<py::object>(PyErr_NewExceptionWithDoc(
        "vnetct_native.TeamingError", "A domain XML that cannot be checked; `code` names the error code.", nullptr,
        nullptr));
    module.attr("TeamingError") = error;
    auto raise = [](const teaming::TeamingError& failure) {
        py::object exception = error(failure.message());
        exception.attr("code") = code_name(failure.code);
        PyErr_SetObject(error.ptr(), exception.ptr());
        throw py::error_already_set();
    };
    module.def("teaming_check_file", [raise](const std::string& path) {
        auto domain = teaming::parse_domain_file(path);
        if (!domain) {
            raise(domain.error());
        }
        return verdict_dict(*domain, teaming::check(*domain));
    });
    module.def("teaming_check_text", [raise](const std::string& xml, const std::string& name) {
        auto domain = teaming::parse_domain(xml, name);
        if (!domain) {
            raise(domain.error());
        }
        return verdict_dict(*domain, teaming::check(*domain));
    });
    module.def("teaming_rules", [] { return rule_list(teaming::teaming_rules()); });
}

}  // namespace vnetct::harness
