#include <cerrno>

#include <gtest/gtest.h>

#include "vnetct/guest_agent/kernel.hpp"

namespace vnetct::guest_agent {
namespace {

class ModuleLoading_test : public ::testing::Test {
protected:
    GuestResult<std::vector<ModuleLoadOutcome>> load(const std::vector<std::string>& names) {
        return load_modules("/lib/modules/vnetct", names, [this](const std::filesystem::path& path) {
            m_attempted.push_back(path.string());
            const auto found = m_errors.find(path.stem().string());
            return found == m_errors.end() ? 0 : found->second;
        });
    }

    std::map<std::string, int> m_errors;
    std::vector<std::string> m_attempted;
};

TEST_F(ModuleLoading_test, LoadsEachModuleInOrder) {
    m_errors["failover"] = EEXIST;
    const auto outcomes = load({"failover", "net_failover", "virtio_net"});
    ASSERT_TRUE(outcomes.has_value()) << outcomes.error().message();
    EXPECT_EQ(m_attempted, (std::vector<std::string>{"/lib/modules/vnetct/failover.ko",
                                                     "/lib/modules/vnetct/net_failover.ko",
                                                     "/lib/modules/vnetct/virtio_net.ko"}));
    ASSERT_EQ(outcomes->size(), 3U);
    EXPECT_EQ((*outcomes)[0].status, ModuleStatus::AlreadyLoaded);
    EXPECT_EQ((*outcomes)[1].status, ModuleStatus::Loaded);
    EXPECT_GE((*outcomes)[2].milliseconds, 0.0);
}

TEST_F(ModuleLoading_test, FailureStopsAndNamesModulePathAndErrno) {
    m_errors["net_failover"] = ENOENT;
    const auto outcomes = load({"failover", "net_failover", "virtio_net"});
    ASSERT_FALSE(outcomes.has_value());
    EXPECT_EQ(outcomes.error().code, GuestErrc::ModuleLoadFailed);
    EXPECT_EQ(outcomes.error().message(),
              "could not load kernel module: module net_failover (/lib/modules/vnetct/net_failover.ko): No such "
              "file or directory");
    EXPECT_EQ(m_attempted.size(), 2U);
}

TEST_F(ModuleLoading_test, NamesWithSlashesAreRefused) {
    const auto outcomes = load({"../../etc/evil"});
    ASSERT_FALSE(outcomes.has_value());
    EXPECT_EQ(outcomes.error().code, GuestErrc::BadArgument);
    EXPECT_TRUE(m_attempted.empty());
}

TEST_F(ModuleLoading_test, KernelLogLines) {
    EXPECT_EQ(split_lines("a\nb\n"), (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(split_lines("a\n\nb"), (std::vector<std::string>{"a", "", "b"}));
    EXPECT_TRUE(split_lines("").empty());
}

}  // namespace
}  // namespace vnetct::guest_agent
