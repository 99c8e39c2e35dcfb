// A sysfs tree in a temporary directory laid out like the real one:
// /sys/class/net/<name> links into /sys/devices/.../net/<name>, whose `device`
// link points at the parent device and `master` at the master netdev.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>

#include "vnetct/guest_agent/ethtool.hpp"

namespace vnetct::guest_agent::testing {

class FakeSysfs {
public:
    FakeSysfs() {
        std::string pattern = (std::filesystem::temp_directory_path() / "vnetct-sysfs-XXXXXX").string();
        m_root = ::mkdtemp(pattern.data());
        std::filesystem::create_directories(m_root / "class" / "net");
        std::filesystem::create_directories(m_root / "devices" / "virtual" / "net");
        std::filesystem::create_directories(m_root / "bus" / "pci");
        std::filesystem::create_directories(m_root / "bus" / "virtio");
    }
    FakeSysfs(const FakeSysfs&) = delete;
    FakeSysfs& operator=(const FakeSysfs&) = delete;
    ~FakeSysfs() { std::filesystem::remove_all(m_root); }

    [[nodiscard]] const std::filesystem::path& root() const { return m_root; }

    // A parent device at devices/<relative> on `bus`; returns its directory.
    std::filesystem::path add_device(const std::string& relative, const std::string& bus) {
        const auto device = m_root / "devices" / relative;
        std::filesystem::create_directories(device);
        std::filesystem::create_symlink(std::filesystem::relative(m_root / "bus" / bus, device),
                                        device / "subsystem");
        return device;
    }

    // A netdev; `parent` is a directory from add_device, or empty for a virtual one.
    std::filesystem::path add_netdev(const std::string& name, int ifindex, const std::string& mac,
                                     const std::filesystem::path& parent = {}) {
        const auto owner = parent.empty() ? m_root / "devices" / "virtual" : parent;
        const auto netdev = owner / "net" / name;
        std::filesystem::create_directories(netdev / "statistics");
        std::filesystem::create_directory_symlink(std::filesystem::relative(netdev, m_root / "class" / "net"),
                                                  m_root / "class" / "net" / name);
        if (!parent.empty()) {
            std::filesystem::create_symlink(std::filesystem::relative(parent, netdev), netdev / "device");
        }
        write(netdev / "ifindex", std::to_string(ifindex));
        write(netdev / "address", mac);
        write(netdev / "operstate", "up");
        int counter = 1;
        for (const char* name_of_counter :
             {"rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped", "tx_dropped"}) {
            write(netdev / "statistics" / name_of_counter, std::to_string(ifindex * 100 + counter++));
        }
        return netdev;
    }

    void set_master(const std::string& slave, const std::string& master) {
        const auto slave_dir = std::filesystem::canonical(m_root / "class" / "net" / slave);
        const auto master_dir = std::filesystem::canonical(m_root / "class" / "net" / master);
        std::filesystem::create_symlink(std::filesystem::relative(master_dir, slave_dir), slave_dir / "master");
    }

    static void write(const std::filesystem::path& path, const std::string& content) {
        std::ofstream(path) << content << "\n";
    }

private:
    std::filesystem::path m_root;
};

class FakeEthtool final : public Ethtool {
public:
    std::map<std::string, DriverInfo> drivers;
    std::map<std::string, MacAddress> permanent_addresses;

    GuestResult<DriverInfo> driver_info(const std::string& ifname) override {
        const auto found = drivers.find(ifname);
        if (found == drivers.end()) {
            return fail(GuestErrc::EthtoolFailed, "Operation not supported");
        }
        return found->second;
    }
    GuestResult<MacAddress> permanent_address(const std::string& ifname) override {
        const auto found = permanent_addresses.find(ifname);
        if (found == permanent_addresses.end()) {
            return fail(GuestErrc::EthtoolFailed, "Operation not supported");
        }
        return found->second;
    }
};

}  // namespace vnetct::guest_agent::testing
