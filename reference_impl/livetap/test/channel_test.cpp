// The hand-off channel without a TAP: framing over SOCK_SEQPACKET, fds in
// SCM_RIGHTS, and the protocol's answers to damaged or mismatched offers
// (LT-STATE-02, LT-XFER-01, LT-XFER-04, LT-CFG-04). Pipes stand in for queue
// fds where only their number matters.
#include "vnetct/livetap/channel.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

using namespace vnetct::livetap;
using namespace std::chrono_literals;

namespace {

Deadline soon() { return std::chrono::steady_clock::now() + 2s; }

TapState state_with_queues(std::uint16_t queues) {
    TapState state;
    state.name = "vt0";
    state.tun_flags = IFF_TAP | IFF_NO_PI | (queues > 1 ? IFF_MULTI_QUEUE : 0);
    state.ifindex = 3;
    state.queue_count = queues;
    return state;
}

struct Pipe {
    Pipe() {
        int fds[2];
        EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
        read_end.reset(fds[0]);
        write_end.reset(fds[1]);
    }
    // Whether every write end is closed (a read sees end of file at once).
    [[nodiscard]] bool writers_gone() const {
        pollfd entry{read_end.get(), POLLIN, 0};
        char byte = 0;
        return poll(&entry, 1, 0) == 1 && read(read_end.get(), &byte, 1) == 0;
    }
    UniqueFd read_end;
    UniqueFd write_end;
};

class Channel_test : public ::testing::Test {
  protected:
    void SetUp() override {
        auto pair = channel_pair();
        ASSERT_TRUE(pair.has_value()) << pair.error().message();
        m_source = std::move(pair->first);
        m_target = std::move(pair->second);
    }

    // Sends raw bytes (with the write end of a pipe) as the source and returns
    // what the target's receive_offer makes of them, checking the target
    // closed the fd and answered with a Reject of the same code.
    LivetapErrc target_verdict_on(const std::vector<std::uint8_t>& bytes, int pipes = 1) {
        std::vector<Pipe> fds(static_cast<std::size_t>(pipes));
        std::vector<int> raw;
        for (auto& one : fds) {
            raw.push_back(one.write_end.get());
        }
        EXPECT_TRUE(send_raw(m_source.get(), bytes, raw, soon()).has_value());
        for (auto& one : fds) {
            one.write_end.reset();
        }
        auto incoming = receive_offer(m_target.get(), soon());
        EXPECT_FALSE(incoming.has_value());
        if (incoming) {
            return LivetapErrc::InvalidArgument;
        }
        for (auto& one : fds) {
            EXPECT_TRUE(one.writers_gone()) << "the target kept an fd of a refused offer";
        }
        auto reply = receive_message(m_source.get(), soon());
        EXPECT_TRUE(reply.has_value());
        if (reply) {
            EXPECT_EQ(reply->frame.type, MessageType::Reject);
            auto rejection = decode_rejection(reply->frame.payload);
            EXPECT_TRUE(rejection.has_value());
            if (rejection) {
                EXPECT_EQ(rejection->code, incoming.error().code);
                EXPECT_EQ(rejection->reason, incoming.error().detail);
            }
        }
        return incoming.error().code;
    }

    static std::vector<std::uint8_t> offer(const TapState& state) {
        return *encode_frame(MessageType::Offer, *encode_state(state));
    }

    UniqueFd m_source;
    UniqueFd m_target;
};

}  // namespace

TEST_F(Channel_test, MessageWithFdsArrivesWhole) {
    Pipe first;
    Pipe second;
    const std::vector<int> fds{first.write_end.get(), second.write_end.get()};
    const std::vector<std::uint8_t> payload{1, 2, 3};
    ASSERT_TRUE(send_message(m_source.get(), MessageType::Commit, payload, fds, soon()).has_value());
    auto message = receive_message(m_target.get(), soon());
    ASSERT_TRUE(message.has_value()) << message.error().message();
    EXPECT_EQ(message->frame.type, MessageType::Commit);
    EXPECT_EQ(message->frame.payload, payload);
    ASSERT_EQ(message->fds.size(), 2U);
    // The received fd is the same pipe: what goes in comes out of the original read end.
    ASSERT_EQ(write(message->fds[1].get(), "x", 1), 1);
    char byte = 0;
    ASSERT_EQ(read(second.read_end.get(), &byte, 1), 1);
    EXPECT_EQ(byte, 'x');
    EXPECT_EQ(fcntl(message->fds[0].get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
}

TEST_F(Channel_test, LT_STATE_02_TruncatedMessageIsRejected) {
    auto bytes = offer(state_with_queues(1));
    bytes.resize(bytes.size() - 3);
    EXPECT_EQ(target_verdict_on(bytes), LivetapErrc::Truncated);
}

TEST_F(Channel_test, LT_STATE_02_ShorterThanAHeaderIsRejected) {
    EXPECT_EQ(target_verdict_on({'V', 'N', 'L', 'T', 1}), LivetapErrc::Truncated);
}

TEST_F(Channel_test, LT_STATE_02_CorruptMessageIsRejected) {
    auto bytes = offer(state_with_queues(1));
    bytes.back() ^= 0x01;
    EXPECT_EQ(target_verdict_on(bytes), LivetapErrc::ChecksumMismatch);
}

TEST_F(Channel_test, LT_STATE_02_OversizedMessageIsRejected) {
    auto bytes = offer(state_with_queues(1));
    bytes.resize(max_message_bytes + 100, 0);
    EXPECT_EQ(target_verdict_on(bytes), LivetapErrc::Oversized);
}

TEST_F(Channel_test, LT_STATE_02_VersionMismatchIsRejected) {
    auto bytes = offer(state_with_queues(1));
    bytes[4] = 0;
    EXPECT_EQ(target_verdict_on(bytes), LivetapErrc::UnsupportedVersion);
}

TEST_F(Channel_test, LT_XFER_01_FewerFdsThanQueuesIsRejected) {
    EXPECT_EQ(target_verdict_on(offer(state_with_queues(3)), 2), LivetapErrc::FdCountMismatch);
}

TEST_F(Channel_test, LT_XFER_01_MoreFdsThanQueuesIsRejected) {
    EXPECT_EQ(target_verdict_on(offer(state_with_queues(1)), 2), LivetapErrc::FdCountMismatch);
}

TEST_F(Channel_test, LT_XFER_01_OfferWithoutFdsIsRejected) {
    EXPECT_EQ(target_verdict_on(offer(state_with_queues(1)), 0), LivetapErrc::FdCountMismatch);
}

TEST_F(Channel_test, LT_STATE_03_FdsThatAreNotQueuesAreRejected) {
    // The right count, but pipes: validation reads TUNGETIFF and refuses.
    EXPECT_EQ(target_verdict_on(offer(state_with_queues(1)), 1), LivetapErrc::StateMismatch);
}

TEST_F(Channel_test, AnythingButAnOfferFirstIsUnexpected) {
    EXPECT_EQ(target_verdict_on(*encode_frame(MessageType::Commit, {})), LivetapErrc::UnexpectedMessage);
}

TEST_F(Channel_test, SourceRefusesToOfferAStateThatDoesNotMatchItsFdCount) {
    Pipe one;
    const std::vector<int> fds{one.write_end.get()};
    auto offered = offer_backend(m_source.get(), state_with_queues(2), fds, soon());
    ASSERT_FALSE(offered.has_value());
    EXPECT_EQ(offered.error().code, LivetapErrc::FdCountMismatch);
}

TEST_F(Channel_test, SenderRefusesMoreFdsThanOneMessageCarries) {
    Pipe one;
    const std::vector<int> fds(max_message_fds + 1, one.write_end.get());
    auto sent = send_message(m_source.get(), MessageType::Offer, {}, fds, soon());
    ASSERT_FALSE(sent.has_value());
    EXPECT_EQ(sent.error().code, LivetapErrc::Oversized);
}

TEST_F(Channel_test, LT_XFER_04_TargetRejectsAndSourceKeepsItsFds) {
    // Pipes fail validation on the target: the source hears why and still
    // owns its fd (the pipe stays open for writing through it).
    Pipe queue;
    const std::vector<int> fds{queue.write_end.get()};
    std::thread target([&] { EXPECT_FALSE(receive_offer(m_target.get(), soon()).has_value()); });
    auto offered = offer_backend(m_source.get(), state_with_queues(1), fds, soon());
    target.join();
    ASSERT_FALSE(offered.has_value());
    EXPECT_EQ(offered.error().code, LivetapErrc::Rejected);
    EXPECT_NE(offered.error().detail.find("TUNGETIFF"), std::string::npos) << offered.error().message();
    EXPECT_EQ(write(queue.write_end.get(), "y", 1), 1);
}

TEST_F(Channel_test, LT_XFER_04_TargetGoneBeforeAcceptingLeavesTheSourceOwner) {
    m_target.reset();
    Pipe queue;
    const std::vector<int> fds{queue.write_end.get()};
    auto offered = offer_backend(m_source.get(), state_with_queues(1), fds, soon());
    ASSERT_FALSE(offered.has_value());
    EXPECT_EQ(offered.error().code, LivetapErrc::PeerClosed);
    EXPECT_EQ(write(queue.write_end.get(), "y", 1), 1);
}

TEST_F(Channel_test, LT_XFER_04_SilentTargetTimesOutAndCannotAcceptLate) {
    Pipe queue;
    const std::vector<int> fds{queue.write_end.get()};
    auto offered = offer_backend(m_source.get(), state_with_queues(1), fds,
                                 std::chrono::steady_clock::now() + 50ms);
    ASSERT_FALSE(offered.has_value());
    EXPECT_EQ(offered.error().code, LivetapErrc::Timeout);
    // The late target gets the offer but can never see a Commit.
    auto message = receive_message(m_target.get(), soon());
    ASSERT_TRUE(message.has_value());
    auto accepted = accept_offer(m_target.get(), soon());
    ASSERT_FALSE(accepted.has_value());
    EXPECT_EQ(accepted.error().code, LivetapErrc::PeerClosed);
}

TEST_F(Channel_test, ReceiveTimesOutAtItsDeadline) {
    const auto start = std::chrono::steady_clock::now();
    auto message = receive_message(m_target.get(), start + 30ms);
    ASSERT_FALSE(message.has_value());
    EXPECT_EQ(message.error().code, LivetapErrc::Timeout);
    EXPECT_GE(std::chrono::steady_clock::now() - start, 30ms);
}

TEST_F(Channel_test, LT_CFG_04_FdsTravelOnlyOverAUnixSeqpacketSocket) {
    int stream[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, stream), 0);
    UniqueFd a(stream[0]);
    UniqueFd b(stream[1]);
    UniqueFd udp(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    Pipe not_a_socket;
    EXPECT_EQ(check_local_channel(a.get()).error().code, LivetapErrc::NotLocal);
    EXPECT_EQ(check_local_channel(udp.get()).error().code, LivetapErrc::NotLocal);
    EXPECT_EQ(check_local_channel(not_a_socket.read_end.get()).error().code, LivetapErrc::NotLocal);
    EXPECT_TRUE(check_local_channel(m_source.get()).has_value());

    const std::vector<int> fds{not_a_socket.write_end.get()};
    auto offered = offer_backend(udp.get(), state_with_queues(1), fds, soon());
    ASSERT_FALSE(offered.has_value());
    EXPECT_EQ(offered.error().code, LivetapErrc::NotLocal);
}

TEST_F(Channel_test, LT_CFG_03_NoBackendMakesAWaitingTargetFailWithTheSourcesReason) {
    const std::string why = "the migration parameter backend-transfer is off";
    ASSERT_TRUE(announce_no_backend(m_source.get(), why, soon()).has_value());
    auto incoming = receive_offer(m_target.get(), soon());
    ASSERT_FALSE(incoming.has_value());
    EXPECT_EQ(incoming.error().code, LivetapErrc::NoIncomingFds);
    EXPECT_EQ(incoming.error().detail, "the source migrates without its backend: " + why);
    // Nobody waits for an answer: the target sends none.
    auto reply = receive_message(m_source.get(), std::chrono::steady_clock::now() + 50ms);
    ASSERT_FALSE(reply.has_value());
    EXPECT_EQ(reply.error().code, LivetapErrc::Timeout);
}

// The target says Ready on every connection; a source that announces
// NoBackend never reads it and closes, which resets the target's end. The
// NoBackend it sent before is still the target's to read.
TEST_F(Channel_test, LT_CFG_03_NoBackendStillArrivesWhenTheSourceLeftTheReadyUnread) {
    announce_ready(m_target.get(), soon());
    ASSERT_TRUE(announce_no_backend(m_source.get(), "the device's backend-transfer is off", soon()).has_value());
    m_source.reset();
    auto incoming = receive_offer(m_target.get(), soon());
    ASSERT_FALSE(incoming.has_value());
    EXPECT_EQ(incoming.error().code, LivetapErrc::NoIncomingFds) << incoming.error().message();
    EXPECT_EQ(incoming.error().detail,
              "the source migrates without its backend: the device's backend-transfer is off");
}

TEST_F(Channel_test, ReadyIsTheOnlyFirstWordASourceAwaits) {
    announce_ready(m_target.get(), soon());
    EXPECT_TRUE(await_ready(m_source.get(), soon()).has_value());
    ASSERT_TRUE(send_message(m_target.get(), MessageType::Accept, {}, {}, soon()).has_value());
    auto ready = await_ready(m_source.get(), soon());
    ASSERT_FALSE(ready.has_value());
    EXPECT_EQ(ready.error().code, LivetapErrc::UnexpectedMessage);
    m_target.reset();
    ready = await_ready(m_source.get(), soon());
    ASSERT_FALSE(ready.has_value());
    EXPECT_EQ(ready.error().code, LivetapErrc::PeerClosed);
}

TEST_F(Channel_test, NoBackendThatCarriesFdsIsUnexpectedAndTheFdsAreClosed) {
    const std::string why = "x";
    const std::vector<std::uint8_t> payload(why.begin(), why.end());
    EXPECT_EQ(target_verdict_on(*encode_frame(MessageType::NoBackend, payload), 1), LivetapErrc::UnexpectedMessage);
}
