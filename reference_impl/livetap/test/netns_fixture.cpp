#include "netns_fixture.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>

#include "vnetct/host_agent/topology.hpp"

namespace vnetct::livetap::test_support {
namespace {

host_agent::Deadline ip_deadline() { return std::chrono::steady_clock::now() + std::chrono::seconds(20); }

class NetnsSweep : public ::testing::Environment {
  public:
    void TearDown() override {
        auto swept = host_agent::sweep_netns(netns_prefix());
        EXPECT_TRUE(swept.has_value()) << swept.error().message();
        if (swept) {
            EXPECT_TRUE(swept->empty()) << "namespaces left behind by a test: " << swept->front();
        }
    }
};
[[maybe_unused]] ::testing::Environment* const kSweep = ::testing::AddGlobalTestEnvironment(new NetnsSweep);

}  // namespace

std::string netns_prefix() { return "vnetct-lt" + std::to_string(getpid()) + "-"; }

TestNetns::TestNetns() {
    static std::atomic<int> counter{0};
    m_name = netns_prefix() + std::to_string(counter++);
    auto added = host_agent::run_checked({"ip", "netns", "add", m_name}, ip_deadline());
    if (!added) {
        ADD_FAILURE() << added.error().message();
        return;
    }
    m_created = true;
    bool ok = false;
    ip({"link", "set", "lo", "up"}, &ok);
    EXPECT_TRUE(ok);
}

TestNetns::~TestNetns() {
    if (m_created) {
        auto deleted = host_agent::run_checked({"ip", "netns", "delete", m_name}, ip_deadline());
        EXPECT_TRUE(deleted.has_value()) << deleted.error().message();
    }
}

std::string TestNetns::ip(const std::vector<std::string>& arguments, bool* ok) const {
    std::vector<std::string> argv{"ip", "-n", m_name};
    argv.insert(argv.end(), arguments.begin(), arguments.end());
    auto output = host_agent::run_checked(argv, ip_deadline());
    if (ok != nullptr) {
        *ok = output.has_value();
    }
    return output ? *output : "ip failed: " + output.error().message();
}

int TestNetns::ifindex(const std::string& device) const {
    bool ok = false;
    const std::string line = ip({"-o", "link", "show", "dev", device}, &ok);
    return ok ? std::stoi(line) : 0;
}

}  // namespace vnetct::livetap::test_support
