// The `report` command: every netdev under <sysfs-root>/class/net with its
// failover role, parent device, driver, virtio feature bits and counters.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vnetct/guest_agent/errors.hpp"
#include "vnetct/guest_agent/ethtool.hpp"

namespace vnetct::guest_agent {

// X(Name, "spelling in the report"); None maps to JSON null by the caller.
#define VNETCT_FAILOVER_ROLES(X) \
    X(None, "none")              \
    X(Master, "master")          \
    X(Standby, "standby")        \
    X(Primary, "primary")
VNETCT_DEFINE_ENUM(FailoverRole, VNETCT_FAILOVER_ROLES)

// The facts classification needs about one netdev.
struct RoleInputs {
    std::optional<std::string> driver;
    std::optional<std::string> master_driver;  // driver of the netdev's master, if any
    std::optional<std::string> phys_port_name;
};

// net_failover's own netdev is the master; its slave with phys_port_name "sby"
// is the standby; any other slave of a net_failover master is the primary.
[[nodiscard]] FailoverRole classify_failover_role(const RoleInputs& inputs);

// Virtio sysfs `features` string, bit 0 first: "0110" -> {1, 2}.
[[nodiscard]] GuestResult<std::vector<int>> parse_virtio_feature_bits(std::string_view features);

// "0000:02:00.0"
[[nodiscard]] bool looks_like_pci_address(std::string_view name);

// {"netdevs":[...]}, sorted by ifindex (then name).
[[nodiscard]] GuestResult<nlohmann::json> build_netdev_report(const std::filesystem::path& sysfs_root,
                                                              Ethtool& ethtool);

}  // namespace vnetct::guest_agent
