#include "fake_sysfs.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>

namespace vnetct::sriov::test_support {
namespace fs = std::filesystem;

FakeSysfs::FakeSysfs() {
    std::string pattern = (fs::temp_directory_path() / "vnetct-fake-sysfs-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
        ADD_FAILURE() << "mkdtemp: " << strerror(errno);
    }
    m_root = pattern;
    fs::create_directories(m_root / "bus/pci/devices");
    fs::create_directories(m_root / "bus/pci/drivers");
    fs::create_directories(m_root / "class/net");
    fs::create_directories(m_root / "kernel/iommu_groups");
    fs::create_directories(m_root / "devices/pci0000:00");
    write_file("bus/pci/drivers_probe", "");
}

FakeSysfs::~FakeSysfs() {
    std::error_code error;
    fs::remove_all(m_root, error);
}

Sysfs FakeSysfs::sysfs() {
    return Sysfs(m_root, [this](const fs::path& path, const std::string& value) { return kernel_write(path, value); });
}

std::string FakeSysfs::read(const std::string& relative_path) const {
    std::ifstream stream(m_root / relative_path);
    std::stringstream content;
    content << stream.rdbuf();
    return content.str();
}

void FakeSysfs::write_file(const std::string& relative_path, const std::string& content) const {
    std::ofstream(m_root / relative_path, std::ios::trunc) << content;
}

std::string FakeSysfs::driver_of(const std::string& address) const {
    const fs::path link = m_root / "bus/pci/devices" / address / "driver";
    std::error_code error;
    if (!fs::is_symlink(link, error)) {
        return "";
    }
    return fs::read_symlink(link).filename().string();
}

void FakeSysfs::add_driver(const std::string& name) {
    fs::create_directories(m_root / "bus/pci/drivers" / name);
    write_file("bus/pci/drivers/" + name + "/bind", "");
    write_file("bus/pci/drivers/" + name + "/unbind", "");
}

void FakeSysfs::add_device(const FakeDevice& device) {
    const fs::path real = m_root / "devices/pci0000:00" / device.address;
    fs::create_directories(real);
    fs::create_directory_symlink("../../../devices/pci0000:00/" + device.address,
                                 m_root / "bus/pci/devices" / device.address);
    write_file("bus/pci/devices/" + device.address + "/driver_override", "(null)\n");
    write_file("bus/pci/devices/" + device.address + "/class", device.pci_class + "\n");
    if (!device.iommu_group.empty()) {
        const fs::path group = m_root / "kernel/iommu_groups" / device.iommu_group;
        fs::create_directories(group / "devices");
        fs::create_directory_symlink("../../../../devices/pci0000:00/" + device.address, group / "devices" / device.address);
        fs::create_directory_symlink("../../../kernel/iommu_groups/" + device.iommu_group, real / "iommu_group");
    }
    m_devices[device.address] = device;
    if (!device.driver.empty()) {
        bind(device.address, device.driver);
    }
}

void FakeSysfs::bind(const std::string& address, const std::string& driver) {
    add_driver(driver);
    const fs::path link = m_root / "bus/pci/devices" / address / "driver";
    std::error_code error;
    fs::remove(link, error);
    fs::create_directory_symlink("../../../bus/pci/drivers/" + driver, link);
    m_devices[address].driver = driver;
}

void FakeSysfs::add_pf(const std::string& name, const std::string& address, int total, int current,
                       const std::string& vf_driver) {
    add_device({address, "ice", "ice", "pf", "0x020000"});
    const fs::path net = m_root / "class/net" / name;
    fs::create_directories(net);
    fs::create_directory_symlink("../../../devices/pci0000:00/" + address, net / "device");
    write_file("bus/pci/devices/" + address + "/sriov_totalvfs", std::to_string(total) + "\n");
    write_file("bus/pci/devices/" + address + "/sriov_numvfs", "0\n");
    m_pfs[name] = {address, vf_driver};
    create_vfs(name, current);
}

void FakeSysfs::add_virtual_netdev(const std::string& name) { fs::create_directories(m_root / "class/net" / name); }

void FakeSysfs::create_vfs(const std::string& pf, int count) {
    const auto& [address, vf_driver] = m_pfs.at(pf);
    const fs::path device = m_root / "devices/pci0000:00" / address;
    for (int index = 0;; ++index) {  // the kernel removes every VF first
        const fs::path link = device / ("virtfn" + std::to_string(index));
        if (!fs::is_symlink(link)) {
            break;
        }
        const std::string vf = vf_address(index);
        fs::remove(link);
        fs::remove(m_root / "bus/pci/devices" / vf);
        fs::remove_all(m_root / "devices/pci0000:00" / vf);
        fs::remove_all(m_root / "kernel/iommu_groups" / ("vf" + std::to_string(index)));
        m_devices.erase(vf);
    }
    for (int index = 0; index < count; ++index) {
        const std::string vf = vf_address(index);
        add_device({vf, vf_driver, vf_driver, "vf" + std::to_string(index), "0x020000"});
        fs::create_directory_symlink("../" + vf, device / ("virtfn" + std::to_string(index)));
    }
    write_file("bus/pci/devices/" + address + "/sriov_numvfs", std::to_string(count) + "\n");
}

int FakeSysfs::kernel_write(const fs::path& path, const std::string& value) {
    const std::string relative = path.lexically_relative(m_root).string();
    m_writes.emplace_back(relative, value);
    if (auto failing = m_failing.find(relative); failing != m_failing.end()) {
        return failing->second;
    }
    std::error_code error;
    if (!fs::exists(fs::symlink_status(path, error))) {
        return ENOENT;
    }
    if (path.filename() == "sriov_numvfs") {
        for (const auto& [name, pf] : m_pfs) {
            if (fs::equivalent(path.parent_path(), m_root / "bus/pci/devices" / pf.first)) {
                const int count = std::stoi(value);
                const int current = std::stoi(read("bus/pci/devices/" + pf.first + "/sriov_numvfs"));
                const int total = std::stoi(read("bus/pci/devices/" + pf.first + "/sriov_totalvfs"));
                if (current != 0 && count != 0) {
                    return EBUSY;
                }
                if (count > total) {
                    return ERANGE;
                }
                create_vfs(name, count);
                return 0;
            }
        }
        return EINVAL;
    }
    if (path.filename() == "driver_override") {
        const std::string cleared = value == "\n" || value.empty() ? "(null)" : value;
        std::ofstream(path, std::ios::trunc) << cleared << "\n";
        return 0;
    }
    if (path.filename() == "unbind") {
        const std::string driver = path.parent_path().filename().string();
        if (driver_of(value) != driver) {
            return ENODEV;
        }
        fs::remove(m_root / "bus/pci/devices" / value / "driver");
        m_devices[value].driver.clear();
        return 0;
    }
    if (path.filename() == "drivers_probe") {
        if (!m_devices.count(value)) {
            return ENODEV;
        }
        if (!driver_of(value).empty() || m_probe_binds_nothing) {
            return 0;
        }
        std::string wanted = read("bus/pci/devices/" + value + "/driver_override");
        while (!wanted.empty() && wanted.back() == '\n') {
            wanted.pop_back();
        }
        if (wanted == "(null)") {
            wanted = m_devices[value].native_driver;
        }
        if (!wanted.empty() && fs::exists(m_root / "bus/pci/drivers" / wanted)) {
            bind(value, wanted);
        }
        return 0;
    }
    if (path.filename() == "bind") {
        bind(value, path.parent_path().filename().string());
        return 0;
    }
    std::ofstream(path, std::ios::trunc) << value;
    return 0;
}

}  // namespace vnetct::sriov::test_support
