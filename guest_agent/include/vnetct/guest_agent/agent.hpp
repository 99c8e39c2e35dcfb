// The agent process: options, finding the virtio-serial port, and the single
// threaded poll loop over the port, rtnetlink, UDP echo sockets and signals.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "vnetct/guest_agent/errors.hpp"

namespace vnetct::guest_agent {

inline constexpr std::string_view kAgentPortName = "org.vnetct.agent";

struct AgentOptions {
    std::optional<std::filesystem::path> device;  // --device: overrides port discovery
    std::filesystem::path sysfs_root = "/sys";
    std::filesystem::path modules_dir = "/lib/modules/vnetct";
    bool show_help = false;
};

[[nodiscard]] GuestResult<AgentOptions> parse_agent_arguments(const std::vector<std::string>& arguments);
[[nodiscard]] std::string agent_usage();

// The virtio-port directory whose `name` is `name`, e.g. "vport1p1" (the host
// agent daemon in an L1 guest finds its own port by its name too).
[[nodiscard]] GuestResult<std::string> find_port(const std::filesystem::path& sysfs_root, std::string_view name);
// The same for kAgentPortName.
[[nodiscard]] GuestResult<std::string> find_agent_port(const std::filesystem::path& sysfs_root);

// /dev/<port>, created with mknod from <sysfs>/class/virtio-ports/<port>/dev if missing.
[[nodiscard]] GuestResult<std::filesystem::path> ensure_port_device(const std::filesystem::path& sysfs_root,
                                                                   const std::string& port);

// Runs until SIGTERM/SIGINT; returns the process exit code.
[[nodiscard]] int run_agent(const AgentOptions& options);

}  // namespace vnetct::guest_agent
