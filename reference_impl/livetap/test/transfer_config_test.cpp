#include "vnetct/livetap/transfer_config.hpp"

#include <gtest/gtest.h>

using namespace vnetct::livetap;

TEST(TransferConfig_test, LT_CFG_01_LT_CFG_04_FdsTravelOnlyWithBothSwitchesOverAUnixSocket) {
    for (int bits = 0; bits < 8; ++bits) {
        const TransferConfig config{(bits & 1) != 0, (bits & 2) != 0, (bits & 4) != 0};
        EXPECT_EQ(transfers_fds(config), bits == 7) << bits;
    }
}

TEST(TransferConfig_test, LT_CFG_02_IncomingFdsExcludesIfnameVnetHdrAndFd) {
    EXPECT_TRUE(check_tap_netdev({true, false, false, false}).has_value());
    EXPECT_TRUE(check_tap_netdev({false, true, true, true}).has_value());
    auto refused = check_tap_netdev({true, true, false, true});
    ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error().code, LivetapErrc::ConflictingOptions);
    EXPECT_EQ(refused.error().detail, "incoming-fds with ifname, fd");
    EXPECT_EQ(check_tap_netdev({true, false, true, false}).error().detail, "incoming-fds with vnet_hdr");
}

TEST(TransferConfig_test, LT_CFG_03_TargetWaitingForFdsThatNeverComeFailsSayingWhy) {
    EXPECT_TRUE(check_target({true, true, true}, true).has_value());
    EXPECT_TRUE(check_target({false, false, false}, false).has_value());
    auto off = check_target({false, true, true}, true);
    ASSERT_FALSE(off.has_value());
    EXPECT_EQ(off.error().code, LivetapErrc::NoIncomingFds);
    EXPECT_NE(off.error().detail.find("migration parameter"), std::string::npos);
    EXPECT_NE(check_target({true, false, true}, true).error().detail.find("device"), std::string::npos);
    EXPECT_NE(check_target({true, true, false}, true).error().detail.find("unix socket"), std::string::npos);
}
