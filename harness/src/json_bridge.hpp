// Shared by the binding translation units: unwrap() (error_binding.hpp),
// deadlines, and JSON <-> Python.
#pragma once

#include <pybind11/pybind11.h>

#include <nlohmann/json.hpp>

#include "error_binding.hpp"
#include "vnetct/host_agent/errors.hpp"
#include "vnetct/host_agent/process.hpp"

namespace vnetct::harness {

// Longest wait a Python caller can ask for: 30 days. +inf and larger values
// are clamped to it (a steady_clock time point would overflow).
inline constexpr double max_timeout_seconds = 30.0 * 24 * 3600;

// `seconds` from Python as a duration to wait: NaN or negative raises
// ValueError naming `argument`; above max_timeout_seconds (+inf too) it is
// clamped to that. Pure C++ (py::value_error): safe without the GIL.
double checked_seconds(double seconds, const char* argument = "timeout");
// Now + checked_seconds(seconds, argument).
host_agent::Deadline deadline_in(double seconds, const char* argument = "timeout");

// JSON <-> Python through the json module: exact, and the data is small.
pybind11::object to_python(const nlohmann::json& value);
nlohmann::json from_python(const pybind11::handle& value);

// The reference model's classes (model_bindings.cpp).
void bind_model(pybind11::module_& module);

}  // namespace vnetct::harness
