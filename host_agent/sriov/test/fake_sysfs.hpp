// A fake sysfs tree in a temporary directory and a fake kernel behind its
// writer: writes are recorded in order (path relative to the root, value)
// and have the kernel's effects on the tree (sriov_numvfs creates or removes
// the VFs and their virtfn links, refuses a non-zero to non-zero change with
// EBUSY; unbind removes the driver link; drivers_probe binds the override or
// the device's native driver). Failures can be injected per path.
#pragma once

#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "vnetct/sriov/sysfs.hpp"

namespace vnetct::sriov::test_support {

struct FakeDevice {
    std::string address;
    std::string driver;         // bound now ("" none)
    std::string native_driver;  // what drivers_probe binds without an override
    std::string iommu_group;
    std::string pci_class = "0x020000";
};

class FakeSysfs {
  public:
    FakeSysfs();
    ~FakeSysfs();
    FakeSysfs(const FakeSysfs&) = delete;
    FakeSysfs& operator=(const FakeSysfs&) = delete;

    [[nodiscard]] const std::filesystem::path& root() const { return m_root; }
    // A Sysfs on this tree whose writes go to the fake kernel.
    [[nodiscard]] Sysfs sysfs();

    void add_driver(const std::string& name);
    void add_device(const FakeDevice& device);
    // A PF netdev `name` on the PCI device `address`, with `total` VFs
    // possible and `current` created; VF n gets the address vf_base + n
    // (function-wise), IOMMU group "vf<n>" of its own and driver `vf_driver`.
    void add_pf(const std::string& name, const std::string& address, int total, int current = 0,
                const std::string& vf_driver = "iavf");
    // A netdev with no PCI device (like veth or a bridge).
    void add_virtual_netdev(const std::string& name);

    [[nodiscard]] std::vector<std::pair<std::string, std::string>> writes() const { return m_writes; }
    void clear_writes() { m_writes.clear(); }
    // Writes to this path (relative to the root) fail with `error`; 0 ends that.
    void fail_writes_to(const std::string& relative_path, int error) {
        if (error == 0) {
            m_failing.erase(relative_path);
        } else {
            m_failing[relative_path] = error;
        }
    }
    // drivers_probe leaves the device unbound (a driver that refuses it).
    void probe_binds_nothing(bool value) { m_probe_binds_nothing = value; }

    [[nodiscard]] std::string read(const std::string& relative_path) const;
    void write_file(const std::string& relative_path, const std::string& content) const;
    [[nodiscard]] std::string driver_of(const std::string& address) const;
    [[nodiscard]] static std::string vf_address(int index) { return "0000:3b:02." + std::to_string(index); }

  private:
    int kernel_write(const std::filesystem::path& path, const std::string& value);
    void bind(const std::string& address, const std::string& driver);
    void create_vfs(const std::string& pf, int count);

    std::filesystem::path m_root;
    std::map<std::string, FakeDevice> m_devices;
    std::map<std::string, std::pair<std::string, std::string>> m_pfs;  // netdev -> (address, vf driver)
    std::vector<std::pair<std::string, std::string>> m_writes;
    std::map<std::string, int> m_failing;
    bool m_probe_binds_nothing = false;
};

}  // namespace vnetct::sriov::test_support
