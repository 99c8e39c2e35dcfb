#include "vnetct/guest_agent/netdev_report.hpp"

#include "vnetct/groupid/groupid.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <fstream>
#include <map>
#include <system_error>

namespace vnetct::guest_agent {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr std::array<const char*, 6> kStatistics = {"rx_packets", "tx_packets", "rx_bytes",
                                                    "tx_bytes",   "rx_dropped", "tx_dropped"};

// Reads a sysfs attribute with read(2): some attributes (phys_port_name) fail
// on read, not on open, and that failure must count as "unavailable".
std::optional<std::string> read_attribute(const fs::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return std::nullopt;
    }
    std::string content;
    std::array<char, 4096> chunk{};
    for (;;) {
        const ssize_t count = ::read(fd, chunk.data(), chunk.size());
        if (count < 0) {
            if (errno == EINTR) {
                continue;
            }
            ::close(fd);
            return std::nullopt;
        }
        if (count == 0) {
            break;
        }
        content.append(chunk.data(), static_cast<std::size_t>(count));
    }
    ::close(fd);
    while (!content.empty() && std::isspace(static_cast<unsigned char>(content.back()))) {
        content.pop_back();
    }
    return content;
}

std::optional<std::uint64_t> read_unsigned(const fs::path& path) {
    const auto text = read_attribute(path);
    if (!text || text->empty() || !std::all_of(text->begin(), text->end(), [](unsigned char c) {
            return std::isdigit(c) != 0;
        })) {
        return std::nullopt;
    }
    try {
        return std::stoull(*text);
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

// Basename of a symlink's target, whether or not the target exists.
std::optional<std::string> link_basename(const fs::path& link) {
    std::error_code error;
    if (!fs::is_symlink(fs::symlink_status(link, error))) {
        return std::nullopt;
    }
    const fs::path target = fs::read_symlink(link, error);
    if (error) {
        return std::nullopt;
    }
    return target.filename().string();
}

json optional_to_json(const std::optional<std::string>& value) {
    return value ? json(*value) : json(nullptr);
}

// Facts gathered per netdev before roles can be classified.
struct NetdevFacts {
    std::string name;
    std::optional<std::uint64_t> ifindex;
    std::optional<std::string> driver;
    std::optional<std::string> master;
    std::optional<std::string> phys_port_name;
    json entry;
};

// The raw config space of a PCI function (sysfs `config`: 64, 256 or 4096 bytes).
std::optional<std::vector<std::uint8_t>> read_config(const fs::path& function_dir) {
    std::ifstream in(function_dir / "config", std::ios::binary);
    if (!in) {
        return std::nullopt;
    }
    std::vector<std::uint8_t> bytes(4096);
    in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    bytes.resize(static_cast<std::size_t>(in.gcount()));
    return bytes;
}

// failover-group-id (vnetct/groupid): the function's own virtio capability,
// else the vendor capability of the bridge above it.
void add_group_id(const fs::path& function_dir, json& entry) {
    entry["group_id"] = nullptr;
    entry["group_id_source"] = nullptr;
    entry["group_id_error"] = nullptr;
    std::vector<std::string> errors;
    if (const auto own = read_config(function_dir)) {
        auto id = groupid::nic_group_id(*own);
        if (id && *id) {
            entry["group_id"] = groupid::format_group_id(**id);
            entry["group_id_source"] = "virtio-cap";
            return;
        }
        if (!id) {
            errors.push_back(function_dir.filename().string() + ": " + id.error().message());
        }
    }
    const fs::path bridge = function_dir.parent_path();
    if (looks_like_pci_address(bridge.filename().string())) {
        if (const auto above = read_config(bridge)) {
            auto id = groupid::bridge_group_id(*above);
            if (id && *id) {
                entry["group_id"] = groupid::format_group_id(**id);
                entry["group_id_source"] = "bridge-cap";
            } else if (!id) {
                errors.push_back(bridge.filename().string() + ": " + id.error().message());
            }
        }
    }
    if (!errors.empty()) {
        std::string text;
        for (const auto& error : errors) {
            text += (text.empty() ? "" : "; ") + error;
        }
        entry["group_id_error"] = text;
    }
}

void add_parent_device(const fs::path& netdev_dir, json& entry) {
    entry["parent_bus"] = nullptr;
    entry["parent_device"] = nullptr;
    entry["pci_address"] = nullptr;
    entry["virtio_features"] = nullptr;
    entry["virtio_feature_bits"] = nullptr;

    std::error_code error;
    const fs::path device_link = netdev_dir / "device";
    if (!fs::is_symlink(fs::symlink_status(device_link, error))) {
        return;
    }
    const fs::path device = fs::canonical(device_link, error);
    if (error) {
        return;
    }
    entry["parent_device"] = device.filename().string();
    const auto bus = link_basename(device / "subsystem");
    entry["parent_bus"] = optional_to_json(bus);

    for (fs::path ancestor = device; ancestor.has_filename(); ancestor = ancestor.parent_path()) {
        const std::string component = ancestor.filename().string();
        if (looks_like_pci_address(component)) {
            entry["pci_address"] = component;
            add_group_id(ancestor, entry);
            break;
        }
    }

    if (bus == "virtio") {
        if (const auto features = read_attribute(device / "features")) {
            entry["virtio_features"] = *features;
            if (auto bits = parse_virtio_feature_bits(*features)) {
                entry["virtio_feature_bits"] = *bits;
            }
        }
    }
}

NetdevFacts gather_facts(const fs::path& netdev_dir, Ethtool& ethtool) {
    NetdevFacts facts;
    facts.name = netdev_dir.filename().string();
    json& entry = facts.entry;
    entry["name"] = facts.name;

    facts.ifindex = read_unsigned(netdev_dir / "ifindex");
    entry["ifindex"] = facts.ifindex ? json(*facts.ifindex) : json(nullptr);
    entry["mac"] = optional_to_json(read_attribute(netdev_dir / "address"));

    entry["perm_mac"] = nullptr;
    if (const auto permanent = ethtool.permanent_address(facts.name)) {
        const bool all_zero = std::all_of(permanent->begin(), permanent->end(), [](auto b) { return b == 0; });
        if (!all_zero) {
            entry["perm_mac"] = format_mac(permanent->data(), permanent->size());
        }
    }

    entry["driver"] = nullptr;
    entry["bus_info"] = nullptr;
    if (const auto info = ethtool.driver_info(facts.name)) {
        facts.driver = info->driver;
        entry["driver"] = info->driver;
        entry["bus_info"] = info->bus_info;
    }

    add_parent_device(netdev_dir, entry);

    facts.master = link_basename(netdev_dir / "master");
    entry["master"] = optional_to_json(facts.master);
    entry["operstate"] = optional_to_json(read_attribute(netdev_dir / "operstate"));
    facts.phys_port_name = read_attribute(netdev_dir / "phys_port_name");
    entry["phys_port_name"] = optional_to_json(facts.phys_port_name);

    json statistics = json::object();
    for (const char* counter : kStatistics) {
        const auto value = read_unsigned(netdev_dir / "statistics" / counter);
        statistics[counter] = value ? json(*value) : json(nullptr);
    }
    entry["statistics"] = std::move(statistics);
    return facts;
}

}  // namespace

FailoverRole classify_failover_role(const RoleInputs& inputs) {
    static constexpr std::string_view kFailoverDriver = "net_failover";
    if (inputs.driver == kFailoverDriver) {
        return FailoverRole::Master;
    }
    if (inputs.master_driver != kFailoverDriver) {
        return FailoverRole::None;
    }
    return inputs.phys_port_name == "sby" ? FailoverRole::Standby : FailoverRole::Primary;
}

GuestResult<std::vector<int>> parse_virtio_feature_bits(std::string_view features) {
    std::vector<int> bits;
    for (std::size_t bit = 0; bit < features.size(); ++bit) {
        const char flag = features[bit];
        if (flag == '1') {
            bits.push_back(static_cast<int>(bit));
        } else if (flag != '0') {
            return fail(GuestErrc::InvalidFeatures, "character " + std::to_string(bit) + " in \"" +
                                                        std::string(features) + "\"");
        }
    }
    return bits;
}

bool looks_like_pci_address(std::string_view name) {
    // DDDD:BB:DD.F, hexadecimal, function 0-7
    if (name.size() != 12 || name[4] != ':' || name[7] != ':' || name[10] != '.') {
        return false;
    }
    for (const std::size_t i : {0, 1, 2, 3, 5, 6, 8, 9}) {
        if (std::isxdigit(static_cast<unsigned char>(name[i])) == 0) {
            return false;
        }
    }
    return name[11] >= '0' && name[11] <= '7';
}

GuestResult<json> build_netdev_report(const fs::path& sysfs_root, Ethtool& ethtool) {
    const fs::path class_net = sysfs_root / "class" / "net";
    std::error_code error;
    fs::directory_iterator iterator(class_net, error);
    if (error) {
        return fail(GuestErrc::SysfsReadFailed, class_net.string() + ": " + error.message());
    }
    std::vector<NetdevFacts> netdevs;
    for (const auto& item : iterator) {
        netdevs.push_back(gather_facts(item.path(), ethtool));
    }

    std::map<std::string, std::optional<std::string>> driver_by_name;
    for (const auto& netdev : netdevs) {
        driver_by_name[netdev.name] = netdev.driver;
    }
    for (auto& netdev : netdevs) {
        RoleInputs inputs{netdev.driver, std::nullopt, netdev.phys_port_name};
        if (netdev.master) {
            if (const auto found = driver_by_name.find(*netdev.master); found != driver_by_name.end()) {
                inputs.master_driver = found->second;
            }
        }
        const FailoverRole role = classify_failover_role(inputs);
        netdev.entry["failover_role"] = role == FailoverRole::None ? json(nullptr) : json(to_string(role));
    }

    std::sort(netdevs.begin(), netdevs.end(), [](const NetdevFacts& a, const NetdevFacts& b) {
        return std::tie(a.ifindex, a.name) < std::tie(b.ifindex, b.name);
    });
    json list = json::array();
    for (auto& netdev : netdevs) {
        list.push_back(std::move(netdev.entry));
    }
    return json{{"netdevs", std::move(list)}};
}

}  // namespace vnetct::guest_agent
