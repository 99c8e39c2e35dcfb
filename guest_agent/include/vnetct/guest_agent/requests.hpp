// The request dispatcher: a pure function of (line, services) -> reply lines.
// Services is the seam to the real system; tests pass a fake.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "vnetct/guest_agent/errors.hpp"
#include "vnetct/guest_agent/kernel.hpp"
#include "vnetct/guest_agent/rtnetlink.hpp"

namespace vnetct::guest_agent {

inline constexpr std::size_t kMaxLineBytes = std::size_t{1} << 20;
inline constexpr int kProtocolVersion = 1;

class AgentServices {
public:
    virtual ~AgentServices() = default;
    [[nodiscard]] virtual GuestResult<nlohmann::json> report() = 0;
    [[nodiscard]] virtual GuestResult<std::vector<std::string>> kernel_log() = 0;
    [[nodiscard]] virtual GuestResult<std::vector<ModuleLoadOutcome>> load_modules(
        const std::vector<std::string>& names) = 0;
    [[nodiscard]] virtual GuestResult<void> configure_ipv4(const std::string& ifname,
                                                           const Ipv4Prefix& prefix) = 0;
    [[nodiscard]] virtual GuestResult<std::uint16_t> start_udp_echo(std::uint16_t port) = 0;
    [[nodiscard]] virtual std::int64_t monotonic_ns() = 0;
    [[nodiscard]] virtual std::int64_t realtime_ns() = 0;
    [[nodiscard]] virtual std::string kernel_release() = 0;
    // CLOCK_REALTIME set to `ns` (a guest restored from a snapshot resumes with the clock of its save).
    [[nodiscard]] virtual GuestResult<void> set_realtime_ns(std::int64_t ns) = 0;
};

// One request line (without '\n') -> reply lines (each ending in '\n').
// Never throws; malformed input gets an error reply with the id, or null.
[[nodiscard]] std::vector<std::string> dispatch_request(std::string_view line, AgentServices& services);

// The error reply for a line that was discarded for exceeding kMaxLineBytes.
[[nodiscard]] std::string oversized_line_reply(std::size_t discarded_bytes);

// {"event":"hello","version":1,"kernel":..,"t_guest_ns":..,"t_guest_realtime_ns":..}
[[nodiscard]] nlohmann::json hello_event(const std::string& kernel, std::int64_t t_guest_ns,
                                         std::int64_t t_guest_realtime_ns);

}  // namespace vnetct::guest_agent
