// A rule table (failover, live-TAP, teaming, group id) as the Python list of
// {"id", "area", "sentence"} dicts that `vnetct list`, the plugin and the
// report use; one conversion for every table.
#pragma once

#include <pybind11/pybind11.h>

#include <span>
#include <string>

#include "vnetct/reference_impl/rules.hpp"

namespace vnetct::harness {

inline pybind11::list rule_list(std::span<const vnetct::reference_impl::Rule> table) {
    pybind11::list rules;
    for (const auto& rule : table) {
        pybind11::dict entry;
        entry["id"] = std::string(rule.id);
        entry["area"] = std::string(rule.area);
        entry["sentence"] = std::string(rule.sentence);
        rules.append(entry);
    }
    return rules;
}

}  // namespace vnetct::harness
