// Guest clocks stamped on every reply and event.
#pragma once

#include <cstdint>

namespace vnetct::guest_agent {

[[nodiscard]] std::int64_t monotonic_ns();
[[nodiscard]] std::int64_t realtime_ns();

}  // namespace vnetct::guest_agent
