// Sysfs against a fake tree: what is written, in which order, and the errors
// a malformed or unsuitable tree gives.
#include "vnetct/sriov/sysfs.hpp"

#include <gtest/gtest.h>

#include <cerrno>

#include "fake_sysfs.hpp"

namespace vnetct::sriov {
namespace {

using test_support::FakeSysfs;
using Writes = std::vector<std::pair<std::string, std::string>>;

constexpr const char* kPfAddress = "0000:3b:00.0";
const std::string kPfDir = std::string("class/net/enp59s0f0/device/");

class Sysfs_test : public ::testing::Test {
  protected:
    void SetUp() override {
        m_fake.add_pf("enp59s0f0", kPfAddress, 8, 0);
        m_fake.add_driver("vfio-pci");
    }
    FakeSysfs m_fake;
    Sysfs m_sut = m_fake.sysfs();
};

TEST_F(Sysfs_test, ReadsPfAddressAndVfCounts) {
    EXPECT_EQ(m_sut.pf_address("enp59s0f0").value(), kPfAddress);
    EXPECT_EQ(m_sut.total_vfs("enp59s0f0").value(), 8);
    EXPECT_EQ(m_sut.num_vfs("enp59s0f0").value(), 0);
}

TEST_F(Sysfs_test, MissingPfIsNoSuchPf) {
    auto result = m_sut.total_vfs("eth9");
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, SriovErrc::NoSuchPf);
    EXPECT_NE(result.error().message().find("eth9"), std::string::npos);
}

TEST_F(Sysfs_test, VirtualNetdevIsNotSriov) {
    m_fake.add_virtual_netdev("veth0");
    auto result = m_sut.total_vfs("veth0");
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, SriovErrc::NotSriov);
    EXPECT_NE(result.error().message().find("no PCI device"), std::string::npos) << result.error().message();
}

TEST_F(Sysfs_test, PciDeviceWithoutSriovCapabilityIsNotSriov) {
    m_fake.add_device({"0000:05:00.0", "e1000e", "e1000e", "5"});
    std::filesystem::create_directories(m_fake.root() / "class/net/eno1");
    std::filesystem::create_directory_symlink("../../../devices/pci0000:00/0000:05:00.0",
                                              m_fake.root() / "class/net/eno1/device");
    auto result = m_sut.total_vfs("eno1");
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, SriovErrc::NotSriov);
    EXPECT_NE(result.error().message().find("sriov_totalvfs"), std::string::npos) << result.error().message();
}

TEST_F(Sysfs_test, GarbageCountIsMalformedAndQuotesIt) {
    m_fake.write_file(kPfDir + "sriov_totalvfs", "eight\n");
    auto result = m_sut.total_vfs("enp59s0f0");
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, SriovErrc::Malformed);
    EXPECT_NE(result.error().message().find("'eight'"), std::string::npos) << result.error().message();
    EXPECT_NE(result.error().message().find("sriov_totalvfs"), std::string::npos);
}

TEST_F(Sysfs_test, NegativeOrTrailingGarbageCountIsMalformed) {
    for (const char* text : {"-1\n", "4x\n", "\n"}) {
        m_fake.write_file(kPfDir + "sriov_numvfs", text);
        auto result = m_sut.num_vfs("enp59s0f0");
        ASSERT_FALSE(result) << text;
        EXPECT_EQ(result.error().code, SriovErrc::Malformed) << text;
    }
}

TEST_F(Sysfs_test, NumVfsAboveTotalIsMalformed) {
    m_fake.write_file(kPfDir + "sriov_numvfs", "9\n");
    auto result = m_sut.set_num_vfs("enp59s0f0", 2);
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, SriovErrc::Malformed);
    EXPECT_NE(result.error().message().find("exceeds sriov_totalvfs 8"), std::string::npos);
    EXPECT_TRUE(m_fake.writes().empty());
}

TEST_F(Sysfs_test, SetNumVfsFromZeroWritesOnce) {
    ASSERT_TRUE(m_sut.set_num_vfs("enp59s0f0", 4));
    EXPECT_EQ(m_fake.writes(), (Writes{{"class/net/enp59s0f0/device/sriov_numvfs", "4"}}));
    EXPECT_EQ(m_sut.num_vfs("enp59s0f0").value(), 4);
    EXPECT_EQ(m_sut.vf_address("enp59s0f0", 3).value(), FakeSysfs::vf_address(3));
}

TEST_F(Sysfs_test, ChangingANonZeroCountGoesThroughZero) {
    ASSERT_TRUE(m_sut.set_num_vfs("enp59s0f0", 2));
    m_fake.clear_writes();
    ASSERT_TRUE(m_sut.set_num_vfs("enp59s0f0", 4)) << "the fake kernel answers EBUSY to 2 -> 4";
    EXPECT_EQ(m_fake.writes(), (Writes{{"class/net/enp59s0f0/device/sriov_numvfs", "0"},
                                       {"class/net/enp59s0f0/device/sriov_numvfs", "4"}}));
}

TEST_F(Sysfs_test, SameCountWritesNothing) {
    ASSERT_TRUE(m_sut.set_num_vfs("enp59s0f0", 2));
    m_fake.clear_writes();
    ASSERT_TRUE(m_sut.set_num_vfs("enp59s0f0", 2));
    EXPECT_TRUE(m_fake.writes().empty());
}

TEST_F(Sysfs_test, MoreThanTotalIsRefusedBeforeAnyWrite) {
    auto result = m_sut.set_num_vfs("enp59s0f0", 9);
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, SriovErrc::TooManyVfs);
    EXPECT_NE(result.error().message().find("sriov_totalvfs is 8"), std::string::npos);
    EXPECT_TRUE(m_fake.writes().empty());
}

TEST_F(Sysfs_test, KernelRefusalIsSysfsWriteWithTheErrno) {
    m_fake.fail_writes_to(kPfDir + "sriov_numvfs", ENOMEM);
    auto result = m_sut.set_num_vfs("enp59s0f0", 2);
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, SriovErrc::SysfsWrite);
    EXPECT_NE(result.error().message().find(strerror(ENOMEM)), std::string::npos) << result.error().message();
}

TEST_F(Sysfs_test, VfBeyondCountIsNoSuchVf) {
    ASSERT_TRUE(m_sut.set_num_vfs("enp59s0f0", 2));
    auto result = m_sut.vf_address("enp59s0f0", 2);
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, SriovErrc::NoSuchVf);
}

TEST_F(Sysfs_test, MissingVirtfnLinkIsNoSuchVf) {
    ASSERT_TRUE(m_sut.set_num_vfs("enp59s0f0", 2));
    std::filesystem::remove(m_fake.root() / kPfDir / "virtfn1");
    auto result = m_sut.vf_address("enp59s0f0", 1);
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, SriovErrc::NoSuchVf);
    EXPECT_NE(result.error().message().find("virtfn1"), std::string::npos);
}

TEST_F(Sysfs_test, BindVfioWritesOverrideUnbindProbeInThatOrder) {
    ASSERT_TRUE(m_sut.set_num_vfs("enp59s0f0", 1));
    m_fake.clear_writes();
    const std::string vf = FakeSysfs::vf_address(0);
    ASSERT_EQ(m_sut.driver(vf).value(), "iavf");
    ASSERT_TRUE(m_sut.bind(vf, "vfio-pci"));
    EXPECT_EQ(m_fake.writes(), (Writes{{"bus/pci/devices/" + vf + "/driver_override", "vfio-pci"},
                                       {"bus/pci/drivers/iavf/unbind", vf},
                                       {"bus/pci/drivers_probe", vf}}));
    EXPECT_EQ(m_sut.driver(vf).value(), "vfio-pci");
    EXPECT_EQ(m_sut.driver_override(vf).value(), "vfio-pci");
}

TEST_F(Sysfs_test, BindWithoutTheDriverLoadedIsDriverMissing) {
    std::filesystem::remove_all(m_fake.root() / "bus/pci/drivers/vfio-pci");
    ASSERT_TRUE(m_sut.set_num_vfs("enp59s0f0", 1));
    m_fake.clear_writes();
    auto result = m_sut.bind(FakeSysfs::vf_address(0), "vfio-pci");
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, SriovErrc::DriverMissing);
    EXPECT_NE(result.error().message().find("modprobe vfio-pci"), std::string::npos);
    EXPECT_TRUE(m_fake.writes().empty());
}

TEST_F(Sysfs_test, ProbeThatBindsNothingIsBindFailed) {
    ASSERT_TRUE(m_sut.set_num_vfs("enp59s0f0", 1));
    m_fake.probe_binds_nothing(true);
    auto result = m_sut.bind(FakeSysfs::vf_address(0), "vfio-pci");
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, SriovErrc::BindFailed);
    EXPECT_NE(result.error().message().find("bound to no driver"), std::string::npos) << result.error().message();
}

TEST_F(Sysfs_test, RestoreBindingPutsTheOldDriverBackAndClearsTheOverride) {
    ASSERT_TRUE(m_sut.set_num_vfs("enp59s0f0", 1));
    const std::string vf = FakeSysfs::vf_address(0);
    ASSERT_TRUE(m_sut.bind(vf, "vfio-pci"));
    m_fake.clear_writes();
    ASSERT_TRUE(m_sut.restore_binding(vf, "iavf", ""));
    EXPECT_EQ(m_fake.writes(), (Writes{{"bus/pci/drivers/vfio-pci/unbind", vf},
                                       {"bus/pci/devices/" + vf + "/driver_override", "\n"},
                                       {"bus/pci/drivers_probe", vf}}));
    EXPECT_EQ(m_sut.driver(vf).value(), "iavf");
    EXPECT_EQ(m_sut.driver_override(vf).value(), "");
    m_fake.clear_writes();
    ASSERT_TRUE(m_sut.restore_binding(vf, "iavf", "")) << "a second restore is a no-op";
    EXPECT_TRUE(m_fake.writes().empty());
}

TEST_F(Sysfs_test, GroupOfTheVfAloneIsViable) {
    ASSERT_TRUE(m_sut.set_num_vfs("enp59s0f0", 1));
    auto group = m_sut.check_group_viable(FakeSysfs::vf_address(0));
    ASSERT_TRUE(group) << group.error().message();
    EXPECT_EQ(group->id, "vf0");
    ASSERT_EQ(group->members.size(), 1u);
    EXPECT_EQ(group->members[0].driver, "iavf");
}

TEST_F(Sysfs_test, GroupWithAForeignBoundDeviceIsNotViable) {
    ASSERT_TRUE(m_sut.set_num_vfs("enp59s0f0", 1));
    m_fake.add_device({"0000:3b:02.7", "nvme", "nvme", "vf0"});
    m_fake.add_device({"0000:3b:02.6", "", "", "vf0"});
    m_fake.add_device({"0000:00:1c.0", "pcieport", "pcieport", "vf0", "0x060400"});
    auto result = m_sut.check_group_viable(FakeSysfs::vf_address(0));
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, SriovErrc::GroupNotViable);
    const std::string message = result.error().message();
    EXPECT_NE(message.find("0000:3b:02.7 (bound to nvme)"), std::string::npos) << message;
    EXPECT_EQ(message.find("0000:3b:02.6"), std::string::npos) << "no driver is viable: " << message;
    EXPECT_EQ(message.find("0000:00:1c.0"), std::string::npos) << "a bridge on pcieport is viable: " << message;
}

TEST_F(Sysfs_test, PcieportOnANonBridgeIsNotViable) {
    ASSERT_TRUE(m_sut.set_num_vfs("enp59s0f0", 1));
    m_fake.add_device({"0000:3b:02.5", "pcieport", "pcieport", "vf0", "0x020000"});
    m_fake.add_device({"0000:3b:02.4", "vfio-pci", "vfio-pci", "vf0"});
    auto result = m_sut.check_group_viable(FakeSysfs::vf_address(0));
    ASSERT_FALSE(result);
    EXPECT_NE(result.error().message().find("0000:3b:02.5 (bound to pcieport)"), std::string::npos);
    EXPECT_EQ(result.error().message().find("0000:3b:02.4"), std::string::npos);
}

TEST_F(Sysfs_test, NoIommuGroupSaysSo) {
    m_fake.add_device({"0000:06:00.0", "iavf", "iavf", ""});
    auto result = m_sut.check_group_viable("0000:06:00.0");
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, SriovErrc::NoIommuGroup);
    EXPECT_NE(result.error().message().find("intel_iommu=on"), std::string::npos);
}

TEST_F(Sysfs_test, GroupNotListingTheDeviceIsMalformed) {
    ASSERT_TRUE(m_sut.set_num_vfs("enp59s0f0", 1));
    std::filesystem::remove(m_fake.root() / "kernel/iommu_groups/vf0/devices" / FakeSysfs::vf_address(0));
    auto result = m_sut.iommu_group(FakeSysfs::vf_address(0));
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, SriovErrc::Malformed);
}

TEST(SysfsAddress_test, PciAddressSyntax) {
    EXPECT_TRUE(valid_pci_address("0000:3b:02.0"));
    EXPECT_TRUE(valid_pci_address("0001:af:1f.7"));
    EXPECT_FALSE(valid_pci_address("0000:3b:02.8"));
    EXPECT_FALSE(valid_pci_address("0000:3B:02.0"));
    EXPECT_FALSE(valid_pci_address("3b:02.0"));
    EXPECT_FALSE(valid_pci_address("../../etc"));
}

}  // namespace
}  // namespace vnetct::sriov
