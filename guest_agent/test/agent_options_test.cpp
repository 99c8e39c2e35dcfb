#include <gtest/gtest.h>

#include "fake_sysfs.hpp"
#include "vnetct/guest_agent/agent.hpp"

namespace vnetct::guest_agent {
namespace {

class AgentOptions_test : public ::testing::Test {};

TEST_F(AgentOptions_test, DefaultsForInit) {
    const auto options = parse_agent_arguments({});
    ASSERT_TRUE(options.has_value());
    EXPECT_FALSE(options->device.has_value());
    EXPECT_EQ(options->sysfs_root, "/sys");
    EXPECT_EQ(options->modules_dir, "/lib/modules/vnetct");
}

TEST_F(AgentOptions_test, Overrides) {
    const auto options =
        parse_agent_arguments({"--device", "/dev/pts/3", "--sysfs-root", "/tmp/sys", "--modules-dir", "/m"});
    ASSERT_TRUE(options.has_value());
    EXPECT_EQ(options->device, "/dev/pts/3");
    EXPECT_EQ(options->sysfs_root, "/tmp/sys");
    EXPECT_EQ(options->modules_dir, "/m");
}

TEST_F(AgentOptions_test, UnknownOrIncompleteOptions) {
    EXPECT_FALSE(parse_agent_arguments({"--verbose"}).has_value());
    EXPECT_FALSE(parse_agent_arguments({"--device"}).has_value());
}

class AgentPortDiscovery_test : public ::testing::Test {
protected:
    void add_port(const std::string& port, const std::string& name) {
        const auto dir = m_sysfs.root() / "class" / "virtio-ports" / port;
        std::filesystem::create_directories(dir);
        testing::FakeSysfs::write(dir / "name", name);
        testing::FakeSysfs::write(dir / "dev", "250:1");
    }

    testing::FakeSysfs m_sysfs;
};

TEST_F(AgentPortDiscovery_test, FindsThePortByName) {
    add_port("vport0p1", "org.qemu.guest_agent.0");
    add_port("vport1p1", "org.vnetct.agent");
    const auto port = find_agent_port(m_sysfs.root());
    ASSERT_TRUE(port.has_value()) << port.error().message();
    EXPECT_EQ(*port, "vport1p1");
}

TEST_F(AgentPortDiscovery_test, MissingPortSaysWhatWasSeen) {
    add_port("vport0p1", "org.qemu.guest_agent.0");
    const auto port = find_agent_port(m_sysfs.root());
    ASSERT_FALSE(port.has_value());
    EXPECT_EQ(port.error().code, GuestErrc::PortNotFound);
    EXPECT_NE(port.error().message().find("vport0p1=org.qemu.guest_agent.0"), std::string::npos);
}

}  // namespace
}  // namespace vnetct::guest_agent
