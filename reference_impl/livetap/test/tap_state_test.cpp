// LT-STATE-01/03 and the hand-off on real TAP queues, each test in a namespace
// of its own.
#include "vnetct/livetap/tap_state.hpp"

#include <gtest/gtest.h>

#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <thread>

#include "netns_fixture.hpp"
#include "vnetct/livetap/channel.hpp"

using namespace vnetct::livetap;
using namespace std::chrono_literals;
using vnetct::livetap::test_support::TestNetns;

namespace {

Deadline soon() { return std::chrono::steady_clock::now() + 2s; }

class TapState_test : public ::testing::Test {
  protected:
    void SetUp() override {
        ASSERT_TRUE(m_netns.created());
        TapSpec spec;
        spec.netns = m_netns.name();
        spec.name = "lt0";
        spec.queues = 2;
        spec.vnet_hdr_size = 12;
        spec.offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
        spec.sndbuf = 1 << 20;
        auto opened = open_tap(spec);
        ASSERT_TRUE(opened.has_value()) << opened.error().message();
        m_sut = std::move(*opened);
    }

    std::vector<int> fds() const { return raw_fds(m_sut.queues); }

    void expect_mismatch(const TapState& state, const std::string& field) {
        auto valid = validate_tap_state(state, fds());
        ASSERT_FALSE(valid.has_value()) << field;
        EXPECT_EQ(valid.error().code, LivetapErrc::StateMismatch) << valid.error().message();
        EXPECT_NE(valid.error().detail.find(field), std::string::npos) << valid.error().message();
    }

    TestNetns m_netns;
    OpenedTap m_sut;
};

}  // namespace

TEST_F(TapState_test, LT_STATE_01_CapturesWhatTheSourceConfigured) {
    const TapState& state = m_sut.state;
    EXPECT_EQ(state.name, "lt0");
    EXPECT_EQ(state.tun_flags & (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE),
              static_cast<std::uint32_t>(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE));
    EXPECT_EQ(state.ifindex, m_netns.ifindex("lt0"));
    struct stat info {};
    ASSERT_EQ(stat(("/run/netns/" + m_netns.name()).c_str(), &info), 0);
    EXPECT_EQ(state.netns_inode, info.st_ino);
    EXPECT_EQ(state.vnet_hdr_size, 12);
    EXPECT_FALSE(state.vnet_le);
    EXPECT_EQ(state.sndbuf, 1 << 20);
    EXPECT_EQ(state.offloads, static_cast<std::uint32_t>(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6));
    EXPECT_EQ(state.queue_count, 2);
    EXPECT_EQ(m_netns.ifindex("lt0"), state.ifindex) << "the device lives in the test's namespace";
}

TEST_F(TapState_test, LT_STATE_03_ItsOwnFdsValidate) {
    auto valid = validate_tap_state(m_sut.state, fds());
    EXPECT_TRUE(valid.has_value()) << valid.error().message();
}

TEST_F(TapState_test, LT_STATE_03_EveryFieldMismatchIsNamed) {
    TapState state = m_sut.state;
    state.name = "lt9";
    expect_mismatch(state, "name: the state says lt9, queue 0 says lt0");
    state = m_sut.state;
    state.tun_flags &= ~static_cast<std::uint32_t>(IFF_VNET_HDR);
    expect_mismatch(state, "tun_flags");
    state = m_sut.state;
    state.vnet_hdr_size = 10;
    expect_mismatch(state, "vnet_hdr_size: the state says 10, queue 0 says 12");
    state = m_sut.state;
    state.vnet_le = true;
    expect_mismatch(state, "vnet_le");
    state = m_sut.state;
    state.sndbuf = 4096;
    expect_mismatch(state, "sndbuf");
    state = m_sut.state;
    state.ifindex += 100;
    expect_mismatch(state, "ifindex");
    state = m_sut.state;
    state.netns_inode += 1;
    expect_mismatch(state, "netns");
}

TEST_F(TapState_test, LT_XFER_01_FdCountMustMatchTheQueueCount) {
    auto valid = validate_tap_state(m_sut.state, std::vector<int>{m_sut.queues[0].get()});
    ASSERT_FALSE(valid.has_value());
    EXPECT_EQ(valid.error().code, LivetapErrc::FdCountMismatch);
}

TEST_F(TapState_test, LT_STATE_03_TheSameQueueTwiceIsNotTwoQueues) {
    UniqueFd copy(dup(m_sut.queues[0].get()));
    auto valid = validate_tap_state(m_sut.state, std::vector<int>{m_sut.queues[0].get(), copy.get()});
    ASSERT_FALSE(valid.has_value());
    EXPECT_EQ(valid.error().code, LivetapErrc::StateMismatch);
    EXPECT_NE(valid.error().detail.find("same open queue"), std::string::npos) << valid.error().message();
}

TEST_F(TapState_test, LT_STATE_03_ADetachedQueueIsRefused) {
    ifreq request{};
    request.ifr_flags = IFF_DETACH_QUEUE;
    ASSERT_EQ(ioctl(m_sut.queues[1].get(), TUNSETQUEUE, &request), 0);
    auto valid = validate_tap_state(m_sut.state, fds());
    ASSERT_FALSE(valid.has_value());
    EXPECT_EQ(valid.error().code, LivetapErrc::StateMismatch);
    EXPECT_NE(valid.error().detail.find("queue 1"), std::string::npos) << valid.error().message();
}

TEST_F(TapState_test, LT_STATE_03_QueuesOfAnotherTapAreRefused) {
    TapSpec other;
    other.netns = m_netns.name();
    other.name = "lt1";
    other.queues = 2;
    auto opened = open_tap(other);
    ASSERT_TRUE(opened.has_value()) << opened.error().message();
    auto valid = validate_tap_state(m_sut.state, raw_fds(opened->queues));
    ASSERT_FALSE(valid.has_value());
    EXPECT_NE(valid.error().detail.find("name"), std::string::npos) << valid.error().message();
    auto mixed = capture_tap_state(std::vector<int>{m_sut.queues[0].get(), opened->queues[0].get()}, 0);
    ASSERT_FALSE(mixed.has_value());
    EXPECT_EQ(mixed.error().code, LivetapErrc::StateMismatch);
}

TEST_F(TapState_test, LT_XFER_01_LT_DATA_02_HandOffMovesEveryQueueAndTheDeviceSurvives) {
    auto pair = channel_pair();
    ASSERT_TRUE(pair.has_value());
    LivetapResult<IncomingBackend> incoming = tl::unexpected(LivetapError{LivetapErrc::Io, "not run"});
    std::thread target([&] { incoming = receive_backend(pair->second.get(), soon()); });
    auto offered = offer_backend(pair->first.get(), m_sut.state, fds(), soon());
    target.join();
    ASSERT_TRUE(offered.has_value()) << offered.error().message();
    ASSERT_TRUE(incoming.has_value()) << incoming.error().message();
    EXPECT_EQ(incoming->state, m_sut.state);
    ASSERT_EQ(incoming->queues.size(), 2U);

    const int ifindex = m_sut.state.ifindex;
    m_sut.queues.clear();  // committed: the source closes its copies
    EXPECT_EQ(m_netns.ifindex("lt0"), ifindex) << "the non-persistent TAP must live on in the target's fds";
    auto revalidated = validate_tap_state(incoming->state, raw_fds(incoming->queues));
    EXPECT_TRUE(revalidated.has_value()) << revalidated.error().message();
}

TEST_F(TapState_test, LT_STATE_03_TargetRejectsAStateThatLiesAndSourceKeepsItsQueues) {
    auto pair = channel_pair();
    ASSERT_TRUE(pair.has_value());
    TapState lying = m_sut.state;
    lying.vnet_hdr_size = 10;
    LivetapResult<IncomingBackend> incoming = tl::unexpected(LivetapError{LivetapErrc::Io, "not run"});
    std::thread target([&] { incoming = receive_backend(pair->second.get(), soon()); });
    auto offered = offer_backend(pair->first.get(), lying, fds(), soon());
    target.join();
    ASSERT_FALSE(incoming.has_value());
    EXPECT_EQ(incoming.error().code, LivetapErrc::StateMismatch);
    ASSERT_FALSE(offered.has_value());
    EXPECT_EQ(offered.error().code, LivetapErrc::Rejected);
    EXPECT_NE(offered.error().detail.find("vnet_hdr_size"), std::string::npos) << offered.error().message();
    auto still_mine = validate_tap_state(m_sut.state, fds());
    EXPECT_TRUE(still_mine.has_value()) << still_mine.error().message();
}
