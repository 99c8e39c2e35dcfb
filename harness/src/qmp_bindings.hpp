#pragma once

#include <pybind11/pybind11.h>

namespace vnetct::harness {

// QmpClient and GuestAgentClient, with JSON crossing as Python dicts/lists.
void bind_clients(pybind11::module_& module);

}  // namespace vnetct::harness
