#include "vnetct/host_agent/topology.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <net/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

using namespace vnetct::host_agent;

namespace {
bool netns_exists(const std::string& name) {
    struct stat info {};
    return stat(("/run/netns/" + name).c_str(), &info) == 0;
}
}  // namespace

class Topology_test : public testing::Test {
  protected:
    void SetUp() override {
        if (geteuid() != 0) {
            GTEST_SKIP() << "needs root to create network namespaces";
        }
        m_name = "vnetct-ut" + std::to_string(getpid());
    }
    std::string m_name;
};

TEST_F(Topology_test, BuildsEswitchWireAndRemovesItAll) {
    {
        auto m_sut = Topology::create({m_name, "vut", 2, "198.18.0.1/24"});
        ASSERT_TRUE(m_sut.has_value()) << m_sut.error().message();
        EXPECT_TRUE(netns_exists(m_name));
        auto description = m_sut->describe();
        ASSERT_TRUE(description.has_value()) << description.error().message();
        for (const auto& name : {"vutbr", "vutt0", "vutt1", "vutpeer", "vutpbr"}) {
            EXPECT_NE(description->find(name), std::string::npos) << name << " missing in\n" << *description;
        }
        // learning off on the TAP ports: `ip -d link` prints "learning off" for each.
        std::size_t learning_off = 0;
        for (auto at = description->find("learning off"); at != std::string::npos;
             at = description->find("learning off", at + 1)) {
            ++learning_off;
        }
        EXPECT_EQ(learning_off, 2U) << *description;
    }
    EXPECT_FALSE(netns_exists(m_name)) << "the destructor must delete the namespace";
}

TEST_F(Topology_test, RejectsBadNamesBeforeTouchingTheHost) {
    auto bad_prefix = Topology::create({m_name, "much-too-long", 1, "198.18.0.1/24"});
    ASSERT_FALSE(bad_prefix.has_value());
    EXPECT_EQ(bad_prefix.error().code, HostErrc::InvalidArgument);
    auto bad_ns = Topology::create({"bad name/..", "vut", 1, "198.18.0.1/24"});
    ASSERT_FALSE(bad_ns.has_value());
    EXPECT_FALSE(netns_exists(m_name));
}

TEST_F(Topology_test, FailedBuildLeavesNothingBehind) {
    auto m_sut = Topology::create({m_name, "vut", 1, "not-an-address"});
    ASSERT_FALSE(m_sut.has_value());
    EXPECT_EQ(m_sut.error().code, HostErrc::TopologyFailed);
    EXPECT_NE(m_sut.error().detail.find("not-an-address"), std::string::npos) << m_sut.error().detail;
    EXPECT_FALSE(netns_exists(m_name));
}

TEST_F(Topology_test, SweepDeletesOnlyMatchingNamespaces) {
    auto first = Topology::create({m_name + "-a", "vua", 1, "198.18.0.1/24"});
    ASSERT_TRUE(first.has_value());
    auto swept = sweep_netns(m_name);
    ASSERT_TRUE(swept.has_value());
    EXPECT_EQ(swept->size(), 1U);
    EXPECT_FALSE(netns_exists(m_name + "-a"));
    EXPECT_FALSE(sweep_netns("vn").has_value()) << "a too short prefix must be refused";
}

TEST_F(Topology_test, TapFdIsAQueueOfTheWiresTap) {
    auto wire = Topology::create({m_name, "vut", 1, "198.18.0.1/24"});
    ASSERT_TRUE(wire.has_value()) << wire.error().message();
    auto fd = open_tap_in_netns(m_name, wire->taps().at(0));
    ASSERT_TRUE(fd.has_value()) << fd.error().message();
    ifreq request{};
    ASSERT_EQ(ioctl(*fd, TUNGETIFF, &request), 0);
    EXPECT_EQ(std::string(request.ifr_name), wire->taps().at(0));
    EXPECT_TRUE(request.ifr_flags & IFF_VNET_HDR);
    // A single-queue TAP has one queue: a second attach is refused while we hold it.
    auto second = open_tap_in_netns(m_name, wire->taps().at(0));
    EXPECT_FALSE(second.has_value());
    close(*fd);
}

TEST_F(Topology_test, TapFdOfAMissingTapIsAnErrorNotANewTap) {
    auto wire = Topology::create({m_name, "vut", 1, "198.18.0.1/24"});
    ASSERT_TRUE(wire.has_value()) << wire.error().message();
    auto missing = open_tap_in_netns(m_name, "vutnosuch");
    ASSERT_FALSE(missing.has_value());
    EXPECT_NE(missing.error().message().find("vutnosuch"), std::string::npos) << missing.error().message();
    auto bad = open_tap_in_netns(m_name, "much-too-long-tap-name");
    ASSERT_FALSE(bad.has_value());
    EXPECT_EQ(bad.error().code, HostErrc::InvalidArgument);
}
