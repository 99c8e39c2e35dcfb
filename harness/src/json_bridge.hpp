// Shared by the binding translation units: unwrap() (error_binding.hpp),
// deadlines, and JSON <-> Python.
#pragma once

#include <pybind11/pybind11.h>

#include <nlohmann/json.hpp>

#include "error_binding.hpp"
#include "vnetct/host_agent/errors.hpp"
#include "vnetct/host_agent/process.hpp"

namespace vnetct::harness {

host_agent::Deadline deadline_in(double seconds);

// JSON <-> Python through the json module: exact, and the data is small.
pybind11::object to_python(const nlohmann::json& value);
nlohmann::json from_python(const pybind11::handle& value);

// The reference model's classes (model_bindings.cpp).
void bind_model(pybind11::module_& module);

}  // namespace vnetct::harness
