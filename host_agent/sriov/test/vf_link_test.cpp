// VF link settings through the PF. No netdev on the test host supports VF
// operations (no SR-IOV NIC; this kernel has neither dummy nor netdevsim), so
// against real netdevs only the error paths run, in a private namespace:
// a veth has no VFs, and the kernel answers "Operation not supported" to
// `ip link set dev VETH vf 0 ...`. The JSON reading runs on the output shape
// of iproute2's `ip -j -d link show` for a PF with VFs.
#include "vnetct/sriov/vf_link.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>

#include "vnetct/host_agent/process.hpp"
#include "vnetct/host_agent/topology.hpp"

namespace vnetct::sriov {
namespace {

host_agent::Deadline soon() { return std::chrono::steady_clock::now() + std::chrono::seconds(20); }

std::string netns_prefix() { return "vnetct-sv" + std::to_string(getpid()) + "-"; }

class NetnsSweep : public ::testing::Environment {
  public:
    void TearDown() override {
        auto swept = host_agent::sweep_netns(netns_prefix());
        ASSERT_TRUE(swept.has_value()) << swept.error().message();
        EXPECT_TRUE(swept->empty()) << "namespace left behind by a test: " << swept->front();
    }
};
[[maybe_unused]] ::testing::Environment* const kSweep = ::testing::AddGlobalTestEnvironment(new NetnsSweep);

class VfLink_test : public ::testing::Test {
  protected:
    void SetUp() override {
        static int counter = 0;
        m_netns = netns_prefix() + std::to_string(counter++);
        ASSERT_TRUE(host_agent::run_checked({"ip", "netns", "add", m_netns}, soon()));
        m_created = true;
        auto veth = host_agent::run_checked(
            {"ip", "-n", m_netns, "link", "add", "pf0", "type", "veth", "peer", "name", "pf0peer"}, soon());
        ASSERT_TRUE(veth) << veth.error().message();
        m_sut = VfLink(m_netns);
    }
    void TearDown() override {
        if (m_created) {
            EXPECT_TRUE(host_agent::run_checked({"ip", "netns", "delete", m_netns}, soon()));
        }
    }
    std::string m_netns;
    bool m_created = false;
    VfLink m_sut;
};

TEST_F(VfLink_test, NetdevWithoutVfsReportsNone) {
    auto vfs = m_sut.read("pf0");
    ASSERT_TRUE(vfs) << vfs.error().message();
    EXPECT_TRUE(vfs->empty());
    auto vf = m_sut.read("pf0", 0);
    ASSERT_FALSE(vf);
    EXPECT_EQ(vf.error().code, SriovErrc::NoSuchVf);
    EXPECT_NE(vf.error().message().find("reports 0 VFs"), std::string::npos) << vf.error().message();
}

TEST_F(VfLink_test, SettingAVfOnANetdevWithoutVfOpsIsUnsupported) {
    VfSettings settings;
    settings.mac = "52:54:00:6F:55:CC";
    auto result = m_sut.apply("pf0", 0, settings);
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, SriovErrc::VfOpsUnsupported) << result.error().message();
    EXPECT_NE(result.error().message().find("vf 0 mac 52:54:00:6f:55:cc"), std::string::npos)
        << "names the command, MAC normalised: " << result.error().message();
    EXPECT_NE(result.error().message().find("Operation not supported"), std::string::npos);
}

TEST_F(VfLink_test, TrustAndVlanAreRefusedTheSameWay) {
    VfSettings trust;
    trust.trust = true;
    EXPECT_EQ(m_sut.apply("pf0", 0, trust).error().code, SriovErrc::VfOpsUnsupported);
    VfSettings vlan;
    vlan.vlan = 100;
    EXPECT_EQ(m_sut.apply("pf0", 0, vlan).error().code, SriovErrc::VfOpsUnsupported);
}

TEST_F(VfLink_test, MissingPfIsNoSuchPf) {
    auto result = m_sut.read("nosuchpf");
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, SriovErrc::NoSuchPf);
}

TEST_F(VfLink_test, BadSettingsAreRefusedBeforeAnyCommand) {
    VfSettings mac;
    mac.mac = "52:54:00:6f:55";
    EXPECT_EQ(m_sut.apply("nosuchpf", 0, mac).error().code, SriovErrc::InvalidArgument);
    VfSettings vlan;
    vlan.vlan = 4096;
    EXPECT_EQ(m_sut.apply("nosuchpf", 0, vlan).error().code, SriovErrc::InvalidArgument);
    EXPECT_EQ(m_sut.apply("nosuchpf", -1, {}).error().code, SriovErrc::InvalidArgument);
}

TEST(VfLinkParse_test, ReadsVfInfoListWithVlanList) {
    const std::string json = R"([{"ifname":"enp59s0f0","vfinfo_list":[
        {"vf":0,"link_type":"ether","address":"00:00:00:00:00:00","broadcast":"ff:ff:ff:ff:ff:ff",
         "vlan_list":[{"vlan":0}],"spoofchk":true,"link_state":"auto","trust":false},
        {"vf":1,"link_type":"ether","address":"52:54:00:6F:55:CC","broadcast":"ff:ff:ff:ff:ff:ff",
         "vlan_list":[{"vlan":100,"qos":3,"protocol":"802.1Q"}],"spoofchk":false,"trust":true}]}])";
    auto vfs = parse_vf_list(json, "enp59s0f0");
    ASSERT_TRUE(vfs) << vfs.error().message();
    ASSERT_EQ(vfs->size(), 2u);
    EXPECT_EQ((*vfs)[1].vf, 1);
    EXPECT_EQ((*vfs)[1].mac, "52:54:00:6f:55:cc");
    EXPECT_EQ((*vfs)[1].vlan, 100);
    EXPECT_EQ((*vfs)[1].qos, 3);
    EXPECT_EQ((*vfs)[1].trust, true);
    EXPECT_EQ((*vfs)[1].spoofchk, false);
    EXPECT_EQ((*vfs)[0].vlan, 0);
}

TEST(VfLinkParse_test, ReadsPlainVlanAndAbsentTrust) {
    auto vfs = parse_vf_list(R"([{"vfinfo_list":[{"vf":3,"address":"02:00:00:00:00:01","vlan":7,"qos":1}]}])", "p");
    ASSERT_TRUE(vfs);
    EXPECT_EQ((*vfs)[0].vlan, 7);
    EXPECT_FALSE((*vfs)[0].trust.has_value());
}

TEST(VfLinkParse_test, GarbageIsCommandFailed) {
    for (const char* text : {"", "[]", "not json", R"([{"vfinfo_list":[{"address":"x"}]}])",
                             R"([{"vfinfo_list":[{"vf":"zero"}]}])"}) {
        auto vfs = parse_vf_list(text, "p");
        ASSERT_FALSE(vfs) << text;
        EXPECT_EQ(vfs.error().code, SriovErrc::CommandFailed) << text;
    }
}

TEST(VfLinkParse_test, MacSyntax) {
    EXPECT_EQ(normalize_mac("52:54:00:6F:55:CC").value(), "52:54:00:6f:55:cc");
    EXPECT_FALSE(normalize_mac("52:54:00:6f:55"));
    EXPECT_FALSE(normalize_mac("52-54-00-6f-55-cc"));
    EXPECT_FALSE(normalize_mac("52:54:00:6g:55:cc"));
}

}  // namespace
}  // namespace vnetct::sriov
