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

}  // namespace vnetct::harness
