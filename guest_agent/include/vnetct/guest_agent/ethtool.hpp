// The ethtool queries the report needs, behind an interface so tests can
// inject a fake; SocketEthtool issues the real SIOCETHTOOL ioctls.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "vnetct/guest_agent/errors.hpp"

namespace vnetct::guest_agent {

struct DriverInfo {
    std::string driver;
    std::string bus_info;
};

using MacAddress = std::array<std::uint8_t, 6>;

class Ethtool {
public:
    virtual ~Ethtool() = default;
    // ETHTOOL_GDRVINFO
    [[nodiscard]] virtual GuestResult<DriverInfo> driver_info(const std::string& ifname) = 0;
    // ETHTOOL_GPERMADDR
    [[nodiscard]] virtual GuestResult<MacAddress> permanent_address(const std::string& ifname) = 0;
};

class SocketEthtool final : public Ethtool {
public:
    [[nodiscard]] GuestResult<DriverInfo> driver_info(const std::string& ifname) override;
    [[nodiscard]] GuestResult<MacAddress> permanent_address(const std::string& ifname) override;
};

// "52:54:00:6f:55:cc"
[[nodiscard]] std::string format_mac(const std::uint8_t* bytes, std::size_t length);

}  // namespace vnetct::guest_agent
