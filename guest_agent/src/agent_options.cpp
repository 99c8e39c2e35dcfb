#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fstream>

#include "vnetct/guest_agent/agent.hpp"

namespace vnetct::guest_agent {
namespace fs = std::filesystem;

namespace {

std::optional<std::string> read_first_line(const fs::path& path) {
    std::ifstream file(path);
    std::string line;
    if (!file || !std::getline(file, line)) {
        return std::nullopt;
    }
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) {
        line.pop_back();
    }
    return line;
}

}  // namespace

std::string agent_usage() {
    return "usage: vnetct-guest-agent [--device PATH] [--sysfs-root DIR] [--modules-dir DIR]\n"
           "  --device PATH      talk over PATH instead of the virtio-serial port named "
           "org.vnetct.agent\n"
           "  --sysfs-root DIR   sysfs mount point (default /sys)\n"
           "  --modules-dir DIR  where load-modules finds <name>.ko (default /lib/modules/vnetct)\n";
}

GuestResult<AgentOptions> parse_agent_arguments(const std::vector<std::string>& arguments) {
    AgentOptions options;
    for (std::size_t i = 0; i < arguments.size(); ++i) {
        const std::string& argument = arguments[i];
        if (argument == "--help" || argument == "-h") {
            options.show_help = true;
            continue;
        }
        if (argument != "--device" && argument != "--sysfs-root" && argument != "--modules-dir") {
            return fail(GuestErrc::BadArgument, "unknown option \"" + argument + "\"");
        }
        if (i + 1 >= arguments.size() || arguments[i + 1].empty()) {
            return fail(GuestErrc::BadArgument, argument + " needs a value");
        }
        const std::string& value = arguments[++i];
        if (argument == "--device") {
            options.device = value;
        } else if (argument == "--sysfs-root") {
            options.sysfs_root = value;
        } else {
            options.modules_dir = value;
        }
    }
    return options;
}

GuestResult<std::string> find_agent_port(const fs::path& sysfs_root) { return find_port(sysfs_root, kAgentPortName); }

GuestResult<std::string> find_port(const fs::path& sysfs_root, std::string_view wanted) {
    const fs::path ports_dir = sysfs_root / "class" / "virtio-ports";
    std::error_code error;
    fs::directory_iterator iterator(ports_dir, error);
    if (error) {
        return fail(GuestErrc::PortNotFound, ports_dir.string() + ": " + error.message());
    }
    std::vector<std::string> ports;
    for (const auto& entry : iterator) {
        ports.push_back(entry.path().filename().string());
    }
    std::sort(ports.begin(), ports.end());
    std::string seen;
    for (const std::string& port : ports) {
        const auto name = read_first_line(ports_dir / port / "name");
        if (name == wanted) {
            return port;
        }
        seen += (seen.empty() ? "" : ", ") + port + "=" + name.value_or("?");
    }
    return fail(GuestErrc::PortNotFound, "ports under " + ports_dir.string() + ": " + (seen.empty() ? "none" : seen));
}

GuestResult<fs::path> ensure_port_device(const fs::path& sysfs_root, const std::string& port) {
    const fs::path device = fs::path("/dev") / port;
    struct stat status {};
    if (::stat(device.c_str(), &status) == 0) {
        return device;
    }
    const fs::path dev_file = sysfs_root / "class" / "virtio-ports" / port / "dev";
    const auto numbers = read_first_line(dev_file);
    unsigned major_number = 0;
    unsigned minor_number = 0;
    if (!numbers || std::sscanf(numbers->c_str(), "%u:%u", &major_number, &minor_number) != 2) {
        return fail(GuestErrc::PortOpenFailed, "no major:minor in " + dev_file.string());
    }
    if (::mknod(device.c_str(), S_IFCHR | 0600, makedev(major_number, minor_number)) != 0 && errno != EEXIST) {
        return fail(GuestErrc::PortOpenFailed, describe_errno("mknod " + device.string(), errno));
    }
    return device;
}

}  // namespace vnetct::guest_agent
