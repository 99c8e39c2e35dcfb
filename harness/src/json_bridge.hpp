// Shared by the binding translation units: the exception that carries a
// HostErrc into the one translator, unwrap(), deadlines, and JSON <-> Python.
#pragma once

#include <pybind11/pybind11.h>

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "vnetct/host_agent/errors.hpp"
#include "vnetct/host_agent/process.hpp"

namespace vnetct::harness {

struct HostFailure : std::runtime_error {
    explicit HostFailure(const Error<host_agent::HostErrc>& error);
    host_agent::HostErrc code;
};

// An error value of the reference model (ModelErrc, TraceErrc, ...) on its way
// to Python as vnetct_native.ModelError.
struct ModelFailure : std::runtime_error {
    ModelFailure(std::string code_name, const std::string& message)
        : std::runtime_error(message), code(std::move(code_name)) {}
    std::string code;
};

template <typename T, typename Errc>
T unwrap_model(Result<T, Errc>&& result) {
    if (!result) {
        throw ModelFailure(std::string(to_string(result.error().code)), result.error().message());
    }
    if constexpr (!std::is_void_v<T>) {
        return std::move(*result);
    }
}

template <typename T>
T unwrap(host_agent::HostResult<T>&& result) {
    if (!result) {
        throw HostFailure(result.error());
    }
    if constexpr (!std::is_void_v<T>) {
        return std::move(*result);
    }
}

host_agent::Deadline deadline_in(double seconds);

// JSON <-> Python through the json module: exact, and the data is small.
pybind11::object to_python(const nlohmann::json& value);
nlohmann::json from_python(const pybind11::handle& value);

// The reference model's classes (model_bindings.cpp).
void bind_model(pybind11::module_& module);

}  // namespace vnetct::harness
