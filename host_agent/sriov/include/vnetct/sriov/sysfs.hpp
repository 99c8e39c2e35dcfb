// SR-IOV through sysfs, on a PF named by its netdev. The sysfs root is
// injectable (tests build a fake tree; the default is /sys) and so is the
// writer: the kernel acts on a write (creates VFs, binds a driver), a fake
// tree does not, so every operation writes, then reads back to confirm.
//
// The paths used, relative to the root:
//   class/net/<pf>/device                 -> the PF's PCI device (its name is the PCI address)
//   class/net/<pf>/device/sriov_totalvfs  sriov_numvfs  virtfn<n> (-> the VF's device)
//   bus/pci/devices/<addr>/driver         -> bus/pci/drivers/<name>   (absent: no driver)
//   bus/pci/devices/<addr>/driver_override  ("(null)" when unset)
//   bus/pci/devices/<addr>/iommu_group    -> kernel/iommu_groups/<n>
//   bus/pci/devices/<addr>/class          (0x0604xx: a PCI-to-PCI bridge)
//   kernel/iommu_groups/<n>/devices/<addr>
//   bus/pci/drivers/<name>/unbind, bus/pci/drivers_probe
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "vnetct/sriov/errors.hpp"

namespace vnetct::sriov {

// Writes `value` to the sysfs attribute `path`; returns 0 or the errno.
using SysfsWriter = std::function<int(const std::filesystem::path& path, const std::string& value)>;

// The real writer: open(O_WRONLY | O_TRUNC), one write().
int write_attribute(const std::filesystem::path& path, const std::string& value);

struct GroupMember {
    std::string address;
    std::string driver;  // empty: no driver bound
    bool bridge = false;
};

struct IommuGroup {
    std::string id;
    std::vector<GroupMember> members;
};

// The drivers with which a device may share an IOMMU group that is handed to
// vfio: they do no DMA of their own (the kernel marks them driver_managed_dma).
inline constexpr const char* kVfioCompatibleDrivers[] = {"vfio-pci", "pci-stub", "pcieport"};

class Sysfs {
  public:
    explicit Sysfs(std::filesystem::path root = "/sys", SysfsWriter writer = write_attribute);

    [[nodiscard]] const std::filesystem::path& root() const { return m_root; }

    // The PF's PCI address (e.g. 0000:3b:00.0).
    [[nodiscard]] SriovResult<std::string> pf_address(const std::string& pf) const;
    [[nodiscard]] SriovResult<int> total_vfs(const std::string& pf) const;
    [[nodiscard]] SriovResult<int> num_vfs(const std::string& pf) const;
    // Sets sriov_numvfs; a different non-zero count is first set to 0 (the
    // kernel refuses to change a non-zero count directly). Confirms by reading.
    SriovResult<void> set_num_vfs(const std::string& pf, int count);
    // The PCI address of VF `index` (the PF's virtfn<index> link).
    [[nodiscard]] SriovResult<std::string> vf_address(const std::string& pf, int index) const;

    // The driver bound to a PCI device; empty when none.
    [[nodiscard]] SriovResult<std::string> driver(const std::string& address) const;
    // driver_override; empty when unset ("(null)").
    [[nodiscard]] SriovResult<std::string> driver_override(const std::string& address) const;
    [[nodiscard]] bool driver_loaded(const std::string& name) const;

    [[nodiscard]] SriovResult<IommuGroup> iommu_group(const std::string& address) const;
    // vfio takes a whole IOMMU group: every other member must have no driver,
    // be bound to one of kVfioCompatibleDrivers, or be a bridge bound to
    // pcieport. GroupNotViable names each member that breaks this.
    [[nodiscard]] SriovResult<IommuGroup> check_group_viable(const std::string& address) const;

    // driver_override = name, unbind from the current driver, drivers_probe;
    // confirms that `name` is bound now.
    SriovResult<void> bind(const std::string& address, const std::string& name);
    // Puts a device back: unbinds whatever is bound unless it is
    // `previous_driver`, restores driver_override, reprobes, and confirms
    // that `previous_driver` (empty: none) is bound. A no-op if already so.
    SriovResult<void> restore_binding(const std::string& address, const std::string& previous_driver,
                                      const std::string& previous_override);

  private:
    [[nodiscard]] std::filesystem::path device_path(const std::string& address) const;
    [[nodiscard]] std::filesystem::path pf_device_path(const std::string& pf) const;
    SriovResult<void> write(const std::filesystem::path& path, const std::string& value);

    std::filesystem::path m_root;
    SysfsWriter m_writer;
};

// "0000:3b:02.0": domain:bus:device.function, lower-case hex.
[[nodiscard]] bool valid_pci_address(const std::string& address);

}  // namespace vnetct::sriov
