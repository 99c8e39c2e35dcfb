#include "vnetct/sriov/sysfs.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>
#include <system_error>

namespace vnetct::sriov {
namespace fs = std::filesystem;
namespace {

SriovResult<std::string> read_attribute(const fs::path& path) {
    std::ifstream stream(path);
    if (!stream) {
        return fail(SriovErrc::SysfsRead, path.string() + ": " + strerror(errno));
    }
    std::stringstream content;
    content << stream.rdbuf();
    std::string text = content.str();
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) {
        text.pop_back();
    }
    return text;
}

SriovResult<int> read_count(const fs::path& path) {
    auto text = read_attribute(path);
    if (!text) {
        return tl::unexpected(text.error());
    }
    int value = -1;
    const char* end = text->data() + text->size();
    auto [next, error] = std::from_chars(text->data(), end, value);
    if (text->empty() || error != std::errc{} || next != end || value < 0) {
        return fail(SriovErrc::Malformed, path.string() + ": expected a non-negative integer, got '" + *text + "'");
    }
    return value;
}

// The last component of a symlink's target: the name of what it points to.
SriovResult<std::string> link_name(const fs::path& path) {
    std::error_code error;
    const fs::path target = fs::read_symlink(path, error);
    if (error) {
        return fail(SriovErrc::SysfsRead, path.string() + ": not a symlink (" + error.message() + ")");
    }
    return target.filename().string();
}

bool present(const fs::path& path) {
    std::error_code error;
    return fs::exists(fs::symlink_status(path, error));
}

}  // namespace

int write_attribute(const fs::path& path, const std::string& value) {
    const int fd = open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd < 0) {
        return errno;
    }
    const ssize_t written = ::write(fd, value.data(), value.size());
    const int error = written < 0 ? errno : (static_cast<size_t>(written) != value.size() ? EIO : 0);
    close(fd);
    return error;
}

bool valid_pci_address(const std::string& address) {
    static const std::regex pattern("[0-9a-f]{4}:[0-9a-f]{2}:[0-1][0-9a-f]\\.[0-7]");
    return std::regex_match(address, pattern);
}

Sysfs::Sysfs(fs::path root, SysfsWriter writer) : m_root(std::move(root)), m_writer(std::move(writer)) {}

fs::path Sysfs::pf_device_path(const std::string& pf) const { return m_root / "class/net" / pf / "device"; }

fs::path Sysfs::device_path(const std::string& address) const { return m_root / "bus/pci/devices" / address; }

SriovResult<void> Sysfs::write(const fs::path& path, const std::string& value) {
    const int error = m_writer(path, value);
    if (error != 0) {
        return fail(SriovErrc::SysfsWrite, "writing '" + value + "' to " + path.string() + ": " + strerror(error));
    }
    return {};
}

SriovResult<std::string> Sysfs::pf_address(const std::string& pf) const {
    if (pf.empty() || pf.find('/') != std::string::npos || pf == "." || pf == "..") {
        return fail(SriovErrc::InvalidArgument, "PF netdev name '" + pf + "'");
    }
    if (!present(m_root / "class/net" / pf)) {
        return fail(SriovErrc::NoSuchPf, pf + " (no " + (m_root / "class/net" / pf).string() + ")");
    }
    if (!present(pf_device_path(pf))) {
        return fail(SriovErrc::NotSriov, pf + " is a virtual netdev with no PCI device (no " +
                                             pf_device_path(pf).string() + ")");
    }
    auto address = link_name(pf_device_path(pf));
    if (!address) {
        return address;
    }
    if (!valid_pci_address(*address)) {
        return fail(SriovErrc::NotSriov, pf + "'s device '" + *address + "' is not a PCI device");
    }
    return address;
}

SriovResult<int> Sysfs::total_vfs(const std::string& pf) const {
    if (auto address = pf_address(pf); !address) {
        return tl::unexpected(address.error());
    }
    const fs::path path = pf_device_path(pf) / "sriov_totalvfs";
    if (!present(path)) {
        return fail(SriovErrc::NotSriov, pf + " (no " + path.string() + ")");
    }
    return read_count(path);
}

SriovResult<int> Sysfs::num_vfs(const std::string& pf) const {
    if (auto total = total_vfs(pf); !total) {
        return tl::unexpected(total.error());
    }
    return read_count(pf_device_path(pf) / "sriov_numvfs");
}

SriovResult<void> Sysfs::set_num_vfs(const std::string& pf, int count) {
    auto total = total_vfs(pf);
    if (!total) {
        return tl::unexpected(total.error());
    }
    if (count < 0 || count > *total) {
        return fail(SriovErrc::TooManyVfs, pf + ": " + std::to_string(count) + " VFs requested, sriov_totalvfs is " +
                                               std::to_string(*total));
    }
    auto current = num_vfs(pf);
    if (!current) {
        return tl::unexpected(current.error());
    }
    if (*current > *total) {
        return fail(SriovErrc::Malformed, pf + ": sriov_numvfs " + std::to_string(*current) +
                                              " exceeds sriov_totalvfs " + std::to_string(*total));
    }
    if (*current == count) {
        return {};
    }
    const fs::path path = pf_device_path(pf) / "sriov_numvfs";
    if (*current != 0 && count != 0) {
        if (auto zero = write(path, "0"); !zero) {
            return zero;
        }
    }
    if (auto written = write(path, std::to_string(count)); !written) {
        return written;
    }
    auto now = num_vfs(pf);
    if (!now) {
        return tl::unexpected(now.error());
    }
    if (*now != count) {
        return fail(SriovErrc::SysfsWrite, pf + ": wrote " + std::to_string(count) + " to " + path.string() +
                                               " but it reads " + std::to_string(*now));
    }
    return {};
}

SriovResult<std::string> Sysfs::vf_address(const std::string& pf, int index) const {
    auto count = num_vfs(pf);
    if (!count) {
        return tl::unexpected(count.error());
    }
    if (index < 0 || index >= *count) {
        return fail(SriovErrc::NoSuchVf, pf + " VF " + std::to_string(index) + ": the PF has " +
                                             std::to_string(*count) + " VFs (sriov_numvfs)");
    }
    const fs::path link = pf_device_path(pf) / ("virtfn" + std::to_string(index));
    if (!present(link)) {
        return fail(SriovErrc::NoSuchVf, pf + " VF " + std::to_string(index) + ": no " + link.string());
    }
    auto address = link_name(link);
    if (address && !valid_pci_address(*address)) {
        return fail(SriovErrc::Malformed, link.string() + " points to '" + *address + "', not a PCI address");
    }
    return address;
}

SriovResult<std::string> Sysfs::driver(const std::string& address) const {
    if (!valid_pci_address(address)) {
        return fail(SriovErrc::InvalidArgument, "PCI address '" + address + "'");
    }
    if (!present(device_path(address))) {
        return fail(SriovErrc::NoSuchVf, "no PCI device " + device_path(address).string());
    }
    const fs::path link = device_path(address) / "driver";
    if (!present(link)) {
        return std::string();
    }
    return link_name(link);
}

SriovResult<std::string> Sysfs::driver_override(const std::string& address) const {
    const fs::path path = device_path(address) / "driver_override";
    if (!present(path)) {
        return fail(SriovErrc::SysfsRead, "no " + path.string() + " (kernel without driver_override?)");
    }
    auto value = read_attribute(path);
    if (value && *value == "(null)") {
        return std::string();
    }
    return value;
}

bool Sysfs::driver_loaded(const std::string& name) const { return present(m_root / "bus/pci/drivers" / name); }

SriovResult<IommuGroup> Sysfs::iommu_group(const std::string& address) const {
    if (!valid_pci_address(address)) {
        return fail(SriovErrc::InvalidArgument, "PCI address '" + address + "'");
    }
    const fs::path link = device_path(address) / "iommu_group";
    if (!present(link)) {
        return fail(SriovErrc::NoIommuGroup, address + " (no " + link.string() +
                                                 "; is the IOMMU on: intel_iommu=on / amd_iommu=on?)");
    }
    IommuGroup group;
    auto id = link_name(link);
    if (!id) {
        return tl::unexpected(id.error());
    }
    group.id = *id;
    const fs::path members = m_root / "kernel/iommu_groups" / group.id / "devices";
    std::error_code error;
    fs::directory_iterator entries(members, error);
    if (error) {
        return fail(SriovErrc::Malformed, members.string() + ": " + error.message());
    }
    for (const auto& entry : entries) {
        GroupMember member;
        member.address = entry.path().filename().string();
        auto driver_name = driver(member.address);
        if (!driver_name) {
            return fail(SriovErrc::Malformed, "IOMMU group " + group.id + " member " + member.address + ": " +
                                                  driver_name.error().message());
        }
        member.driver = *driver_name;
        auto pci_class = read_attribute(device_path(member.address) / "class");
        member.bridge = pci_class && pci_class->rfind("0x0604", 0) == 0;
        group.members.push_back(std::move(member));
    }
    std::sort(group.members.begin(), group.members.end(),
              [](const GroupMember& a, const GroupMember& b) { return a.address < b.address; });
    if (std::none_of(group.members.begin(), group.members.end(),
                     [&](const GroupMember& member) { return member.address == address; })) {
        return fail(SriovErrc::Malformed, members.string() + " does not list " + address + " itself");
    }
    return group;
}

SriovResult<IommuGroup> Sysfs::check_group_viable(const std::string& address) const {
    auto group = iommu_group(address);
    if (!group) {
        return group;
    }
    std::string offenders;
    for (const auto& member : group->members) {
        if (member.address == address || member.driver.empty()) {
            continue;
        }
        const bool compatible = std::any_of(std::begin(kVfioCompatibleDrivers), std::end(kVfioCompatibleDrivers),
                                            [&](const char* name) { return member.driver == name; });
        if (compatible && (member.driver != "pcieport" || member.bridge)) {
            continue;
        }
        offenders += (offenders.empty() ? "" : ", ") + member.address + " (bound to " + member.driver + ")";
    }
    if (!offenders.empty()) {
        return fail(SriovErrc::GroupNotViable,
                    "IOMMU group " + group->id + " of " + address + " also holds " + offenders +
                        "; each other member must have no driver or be bound to vfio-pci, pci-stub or (bridges) "
                        "pcieport");
    }
    return group;
}

SriovResult<void> Sysfs::bind(const std::string& address, const std::string& name) {
    auto current = driver(address);
    if (!current) {
        return tl::unexpected(current.error());
    }
    if (!driver_loaded(name)) {
        return fail(SriovErrc::DriverMissing, name + " (no " + (m_root / "bus/pci/drivers" / name).string() +
                                                  "; modprobe " + name + ")");
    }
    if (*current == name) {
        return {};
    }
    if (auto written = write(device_path(address) / "driver_override", name); !written) {
        return written;
    }
    if (!current->empty()) {
        if (auto written = write(m_root / "bus/pci/drivers" / *current / "unbind", address); !written) {
            return written;
        }
    }
    if (auto written = write(m_root / "bus/pci/drivers_probe", address); !written) {
        return written;
    }
    auto now = driver(address);
    if (!now) {
        return tl::unexpected(now.error());
    }
    if (*now != name) {
        return fail(SriovErrc::BindFailed, address + ": after driver_override=" + name + " and drivers_probe it is " +
                                               (now->empty() ? std::string("bound to no driver") : "bound to " + *now));
    }
    return {};
}

SriovResult<void> Sysfs::restore_binding(const std::string& address, const std::string& previous_driver,
                                         const std::string& previous_override) {
    auto current = driver(address);
    if (!current) {
        return tl::unexpected(current.error());
    }
    auto override_now = driver_override(address);
    if (!override_now) {
        return tl::unexpected(override_now.error());
    }
    if (*current == previous_driver && *override_now == previous_override) {
        return {};
    }
    if (!current->empty() && *current != previous_driver) {
        if (auto written = write(m_root / "bus/pci/drivers" / *current / "unbind", address); !written) {
            return written;
        }
    }
    if (*override_now != previous_override) {
        // An empty write clears the override.
        if (auto written = write(device_path(address) / "driver_override", previous_override.empty() ? "\n"
                                                                                                    : previous_override);
            !written) {
            return written;
        }
    }
    if (!previous_driver.empty() && *current != previous_driver) {
        if (auto written = write(m_root / "bus/pci/drivers_probe", address); !written) {
            return written;
        }
    }
    auto now = driver(address);
    if (!now) {
        return tl::unexpected(now.error());
    }
    if (*now != previous_driver) {
        return fail(SriovErrc::BindFailed, address + ": expected " +
                                               (previous_driver.empty() ? std::string("no driver")
                                                                        : "driver " + previous_driver) +
                                               " after restoring, found " + (now->empty() ? "none" : *now));
    }
    return {};
}

}  // namespace vnetct::sriov
