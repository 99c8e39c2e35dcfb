#include "vnetct/guest_agent/netdev_report.hpp"

#include <gtest/gtest.h>

#include "fake_sysfs.hpp"
#include "vnetct/groupid/groupid.hpp"

#include <fstream>

namespace vnetct::guest_agent {
namespace {

using nlohmann::json;
using testing::FakeEthtool;
using testing::FakeSysfs;

// The guest side of a QEMU failover pair: net_failover master eth0, virtio
// standby eth1 ("sby", bit 62 negotiated) and the e1000e primary eth2.
class NetdevReport_test : public ::testing::Test {
protected:
    void SetUp() override {
        m_sysfs.add_netdev("lo", 1, "00:00:00:00:00:00");
        m_sysfs.add_netdev("eth0", 2, "52:54:00:6f:55:cc");

        const auto virtio = m_sysfs.add_device("pci0000:00/0000:00:1c.0/0000:01:00.0/virtio0", "virtio");
        m_standby_features = std::string(64, '0');
        m_standby_features[0] = '1';
        m_standby_features[5] = '1';
        m_standby_features[62] = '1';
        FakeSysfs::write(virtio / "features", m_standby_features);
        const auto standby = m_sysfs.add_netdev("eth1", 3, "52:54:00:6f:55:cc", virtio);
        FakeSysfs::write(standby / "phys_port_name", "sby");

        const auto e1000e = m_sysfs.add_device("pci0000:00/0000:00:1c.1/0000:02:00.0", "pci");
        m_sysfs.add_netdev("eth2", 4, "52:54:00:6f:55:cc", e1000e);

        m_sysfs.set_master("eth1", "eth0");
        m_sysfs.set_master("eth2", "eth0");

        m_ethtool.drivers["eth0"] = {"net_failover", ""};
        m_ethtool.drivers["eth1"] = {"virtio_net", "0000:01:00.0"};
        m_ethtool.drivers["eth2"] = {"e1000e", "0000:02:00.0"};
        m_ethtool.permanent_addresses["lo"] = {0, 0, 0, 0, 0, 0};
        m_ethtool.permanent_addresses["eth1"] = {0x52, 0x54, 0x00, 0x6f, 0x55, 0xcc};
        m_ethtool.permanent_addresses["eth2"] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
    }

    json netdev(const std::string& name) {
        const auto report = build_netdev_report(m_sysfs.root(), m_ethtool);
        EXPECT_TRUE(report.has_value());
        for (const json& entry : report->at("netdevs")) {
            if (entry.at("name") == name) {
                return entry;
            }
        }
        ADD_FAILURE() << "no netdev " << name << " in " << report->dump();
        return json{};
    }

    FakeSysfs m_sysfs;
    FakeEthtool m_ethtool;
    std::string m_standby_features;
};

TEST_F(NetdevReport_test, ListsEveryNetdevSortedByIfindex) {
    const auto report = build_netdev_report(m_sysfs.root(), m_ethtool);
    ASSERT_TRUE(report.has_value()) << report.error().message();
    std::vector<std::string> names;
    for (const json& entry : report->at("netdevs")) {
        names.push_back(entry.at("name"));
    }
    EXPECT_EQ(names, (std::vector<std::string>{"lo", "eth0", "eth1", "eth2"}));
}

TEST_F(NetdevReport_test, FailoverMasterHasNoParentDevice) {
    const json master = netdev("eth0");
    EXPECT_EQ(master.at("failover_role"), "master");
    EXPECT_EQ(master.at("driver"), "net_failover");
    EXPECT_EQ(master.at("ifindex"), 2);
    EXPECT_EQ(master.at("mac"), "52:54:00:6f:55:cc");
    EXPECT_TRUE(master.at("master").is_null());
    EXPECT_TRUE(master.at("parent_bus").is_null());
    EXPECT_TRUE(master.at("parent_device").is_null());
    EXPECT_TRUE(master.at("pci_address").is_null());
    EXPECT_TRUE(master.at("perm_mac").is_null());
    EXPECT_TRUE(master.at("phys_port_name").is_null());
    EXPECT_TRUE(master.at("virtio_features").is_null());
}

TEST_F(NetdevReport_test, StandbyIsVirtioSlaveWithFeatureBits) {
    const json standby = netdev("eth1");
    EXPECT_EQ(standby.at("failover_role"), "standby");
    EXPECT_EQ(standby.at("master"), "eth0");
    EXPECT_EQ(standby.at("driver"), "virtio_net");
    EXPECT_EQ(standby.at("bus_info"), "0000:01:00.0");
    EXPECT_EQ(standby.at("parent_bus"), "virtio");
    EXPECT_EQ(standby.at("parent_device"), "virtio0");
    EXPECT_EQ(standby.at("pci_address"), "0000:01:00.0");
    EXPECT_EQ(standby.at("phys_port_name"), "sby");
    EXPECT_EQ(standby.at("perm_mac"), "52:54:00:6f:55:cc");
    EXPECT_EQ(standby.at("virtio_features"), m_standby_features);
    EXPECT_EQ(standby.at("virtio_feature_bits"), (std::vector<int>{0, 5, 62}));
}

TEST_F(NetdevReport_test, PrimaryIsPciSlaveOfTheSameMaster) {
    const json primary = netdev("eth2");
    EXPECT_EQ(primary.at("failover_role"), "primary");
    EXPECT_EQ(primary.at("master"), "eth0");
    EXPECT_EQ(primary.at("parent_bus"), "pci");
    EXPECT_EQ(primary.at("parent_device"), "0000:02:00.0");
    EXPECT_EQ(primary.at("pci_address"), "0000:02:00.0");
    EXPECT_EQ(primary.at("perm_mac"), "52:54:00:12:34:56");
    EXPECT_TRUE(primary.at("virtio_features").is_null());
    EXPECT_TRUE(primary.at("virtio_feature_bits").is_null());
}

TEST_F(NetdevReport_test, LoopbackHasNoRoleDriverOrPermanentAddress) {
    const json loopback = netdev("lo");
    EXPECT_TRUE(loopback.at("failover_role").is_null());
    EXPECT_TRUE(loopback.at("driver").is_null());
    EXPECT_TRUE(loopback.at("bus_info").is_null());
    EXPECT_TRUE(loopback.at("perm_mac").is_null()) << "an all-zero permanent address means none";
    EXPECT_EQ(loopback.at("operstate"), "up");
}

TEST_F(NetdevReport_test, StatisticsComeFromSysfsCounters) {
    const json statistics = netdev("eth2").at("statistics");
    EXPECT_EQ(statistics.at("rx_packets"), 401);
    EXPECT_EQ(statistics.at("tx_packets"), 402);
    EXPECT_EQ(statistics.at("rx_bytes"), 403);
    EXPECT_EQ(statistics.at("tx_bytes"), 404);
    EXPECT_EQ(statistics.at("rx_dropped"), 405);
    EXPECT_EQ(statistics.at("tx_dropped"), 406);
}

TEST_F(NetdevReport_test, UnreadableCounterIsNull) {
    std::filesystem::remove(m_sysfs.root() / "class/net/eth2/statistics/tx_dropped");
    EXPECT_TRUE(netdev("eth2").at("statistics").at("tx_dropped").is_null());
}

TEST_F(NetdevReport_test, SlaveOfNonFailoverMasterHasNoRole) {
    m_ethtool.drivers["eth0"] = {"bonding", ""};
    EXPECT_TRUE(netdev("eth0").at("failover_role").is_null());
    EXPECT_TRUE(netdev("eth1").at("failover_role").is_null());
    EXPECT_TRUE(netdev("eth2").at("failover_role").is_null());
}

TEST_F(NetdevReport_test, MalformedFeaturesStringKeepsRawTextWithoutBits) {
    FakeSysfs::write(m_sysfs.root() / "devices/pci0000:00/0000:00:1c.0/0000:01:00.0/virtio0/features", "01x1");
    const json standby = netdev("eth1");
    EXPECT_EQ(standby.at("virtio_features"), "01x1");
    EXPECT_TRUE(standby.at("virtio_feature_bits").is_null());
}

TEST_F(NetdevReport_test, MissingSysfsIsAnError) {
    const auto report = build_netdev_report(m_sysfs.root() / "nonexistent", m_ethtool);
    ASSERT_FALSE(report.has_value());
    EXPECT_EQ(report.error().code, GuestErrc::SysfsReadFailed);
}

}  // namespace
}  // namespace vnetct::guest_agent

namespace vnetct::guest_agent {
namespace {

// failover-group-id from config space: the standby's own virtio capability,
// the primary's bridge above it; malformed config spaces are reported, not guessed.
class GroupIdReport_test : public ::testing::Test {
protected:
    static void write_config(const std::filesystem::path& function_dir, const std::vector<std::uint8_t>& bytes) {
        std::ofstream(function_dir / "config", std::ios::binary)
            .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    }
    nlohmann::json report_of(const std::string& name) {
        auto report = build_netdev_report(m_sysfs.root(), m_ethtool);
        EXPECT_TRUE(report.has_value());
        for (const auto& entry : report->at("netdevs")) {
            if (entry["name"] == name) {
                return entry;
            }
        }
        ADD_FAILURE() << "no netdev " << name;
        return {};
    }
    testing::FakeSysfs m_sysfs;
    testing::FakeEthtool m_ethtool;
};

TEST_F(GroupIdReport_test, StandbyFromItsVirtioCapPrimaryFromItsBridge) {
    const auto port0 = m_sysfs.add_device("pci0000:00/0000:00:1c.0", "pci");
    const auto function = m_sysfs.add_device("pci0000:00/0000:00:1c.0/0000:01:00.0", "pci");
    const auto virtio = m_sysfs.add_device("pci0000:00/0000:00:1c.0/0000:01:00.0/virtio0", "virtio");
    m_sysfs.add_netdev("eth1", 3, "52:54:00:6f:55:cc", virtio);
    write_config(port0, groupid::encode_bridge_config(std::nullopt));
    write_config(function, groupid::encode_nic_config(0x42));
    const auto port1 = m_sysfs.add_device("pci0000:00/0000:00:1c.1", "pci");
    const auto e1000e = m_sysfs.add_device("pci0000:00/0000:00:1c.1/0000:02:00.0", "pci");
    m_sysfs.add_netdev("eth2", 4, "52:54:00:00:00:01", e1000e);
    write_config(port1, groupid::encode_bridge_config(0x42));
    std::vector<std::uint8_t> plain(64, 0);
    write_config(e1000e, plain);

    const auto standby = report_of("eth1");
    EXPECT_EQ(standby["group_id"], "0x0000000000000042");
    EXPECT_EQ(standby["group_id_source"], "virtio-cap");
    const auto primary = report_of("eth2");
    EXPECT_EQ(primary["group_id"], "0x0000000000000042");
    EXPECT_EQ(primary["group_id_source"], "bridge-cap");
    EXPECT_TRUE(primary["group_id_error"].is_null());
}

TEST_F(GroupIdReport_test, NoGroupIdAndMalformedConfigAreTold) {
    const auto port = m_sysfs.add_device("pci0000:00/0000:00:1c.0", "pci");
    const auto function = m_sysfs.add_device("pci0000:00/0000:00:1c.0/0000:01:00.0", "pci");
    m_sysfs.add_netdev("eth1", 3, "52:54:00:6f:55:cc", function);
    write_config(port, groupid::encode_bridge_config(std::nullopt));
    write_config(function, groupid::encode_nic_config(std::nullopt));
    auto entry = report_of("eth1");
    EXPECT_TRUE(entry["group_id"].is_null());
    EXPECT_TRUE(entry["group_id_error"].is_null());

    auto looped = groupid::encode_nic_config(std::nullopt);
    looped[0x41] = 0x40;
    write_config(function, looped);
    entry = report_of("eth1");
    EXPECT_TRUE(entry["group_id"].is_null());
    EXPECT_NE(entry["group_id_error"].get<std::string>().find("0000:01:00.0: the capability list loops"),
              std::string::npos)
        << entry["group_id_error"];
}

}  // namespace
}  // namespace vnetct::guest_agent
