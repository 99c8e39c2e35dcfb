#include "vnetct/host_agent/qemu_command.hpp"

#include <gtest/gtest.h>

using namespace vnetct::host_agent;

TEST(QemuCommand_test, EscapesCommasInValuesOnly) {
    EXPECT_EQ(escape_option_value("a,b,,c"), "a,,b,,,,c");
    EXPECT_EQ(escape_option_value(""), "");
    auto list = option_list("chardev-socket", {{"path", "/tmp/x,y/qmp.sock"}, {"server", "on"}});
    ASSERT_TRUE(list.has_value());
    EXPECT_EQ(*list, "chardev-socket,path=/tmp/x,,y/qmp.sock,server=on");
}

TEST(QemuCommand_test, PropertyListWithoutDriver) {
    auto list = option_list("", {{"unix", "/tmp/q.sock"}, {"server", "on"}});
    ASSERT_TRUE(list.has_value());
    EXPECT_EQ(*list, "unix=/tmp/q.sock,server=on");
}

TEST(QemuCommand_test, RejectsBadKeysAndDrivers) {
    EXPECT_FALSE(option_list("virtio-net-pci", {{"bad,key", "x"}}).has_value());
    EXPECT_FALSE(option_list("virtio-net-pci", {{"k=v", "x"}}).has_value());
    EXPECT_FALSE(option_list("virtio-net-pci", {{"", "x"}}).has_value());
    auto bad = option_list("e1000e,failover_pair_id=x", {});
    ASSERT_FALSE(bad.has_value());
    EXPECT_EQ(bad.error().code, HostErrc::InvalidArgument);
    EXPECT_NE(bad.error().message().find("e1000e,failover_pair_id=x"), std::string::npos);
}

TEST(QemuCommand_test, BuildsArgvInOrderAndReportsFirstError) {
    QemuCommand m_sut("/usr/bin/qemu-system-x86_64");
    m_sut.flag("-nodefaults").option("-m", "512").option("-device", "virtio-net-pci",
                                                         {{"id", "net1"}, {"failover", "on"}});
    auto argv = m_sut.argv();
    ASSERT_TRUE(argv.has_value());
    EXPECT_EQ(*argv, (std::vector<std::string>{"/usr/bin/qemu-system-x86_64", "-nodefaults", "-m", "512",
                                               "-device", "virtio-net-pci,id=net1,failover=on"}));
    m_sut.option("-device", "e1000e", {{"a=b", "1"}}).option("-device", "e1000e", {{"c,d", "1"}});
    auto broken = m_sut.argv();
    ASSERT_FALSE(broken.has_value());
    EXPECT_NE(broken.error().detail.find("a=b"), std::string::npos);
}

TEST(QemuCommand_test, ShellLineQuotesOnlyWhatNeedsIt) {
    QemuCommand m_sut("qemu");
    m_sut.option("-append", "console=ttyS0 panic=-1").option("-name", "it's");
    EXPECT_EQ(m_sut.shell_line(), "qemu -append 'console=ttyS0 panic=-1' -name 'it'\\''s'");
}
