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

TEST(QemuCommand_test, ShellQuoteQuotesOnlyWhatNeedsIt) {
    EXPECT_EQ(shell_quote("qemu"), "qemu");
    EXPECT_EQ(shell_quote("console=ttyS0 panic=-1"), "'console=ttyS0 panic=-1'");
    EXPECT_EQ(shell_quote("it's"), "'it'\\''s'");
    EXPECT_EQ(shell_quote(""), "''");
}
