// LT-STATE-01/02: the state's encoding and the frame around it.
#include "vnetct/livetap/codec.hpp"

#include <gtest/gtest.h>

#include <linux/if_tun.h>
#include <net/if.h>

#include <string>

using namespace vnetct::livetap;

namespace {

TapState sample_state() {
    TapState state;
    state.name = "vt0";
    state.tun_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE;
    state.ifindex = 7;
    state.netns_inode = 4026532281ULL;
    state.vnet_hdr_size = 12;
    state.vnet_le = true;
    state.sndbuf = 0x7fffffff;
    state.offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
    state.queue_count = 4;
    return state;
}

std::vector<std::uint8_t> offer_bytes(const TapState& state = sample_state()) {
    auto payload = encode_state(state);
    EXPECT_TRUE(payload.has_value());
    auto frame = encode_frame(MessageType::Offer, *payload);
    EXPECT_TRUE(frame.has_value());
    return *frame;
}

void put_u32(std::vector<std::uint8_t>& bytes, std::size_t at, std::uint32_t value) {
    for (int i = 0; i < 4; ++i) {
        bytes[at + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(value >> (8 * i));
    }
}

// Rewrites the header's crc32 so that a deliberate change passes the checksum.
void reseal(std::vector<std::uint8_t>& bytes) {
    const std::span<const std::uint8_t> all(bytes);
    put_u32(bytes, 12, crc32(all.subspan(frame_header_bytes), crc32(all.first(12))));
}

}  // namespace

TEST(Codec_test, Crc32IsTheIeeeCrc) {
    const std::string check = "123456789";
    EXPECT_EQ(crc32(std::span(reinterpret_cast<const std::uint8_t*>(check.data()), check.size())), 0xCBF43926U);
    EXPECT_EQ(crc32({}), 0U);
}

TEST(Codec_test, LT_STATE_01_StateRoundTripsEveryField) {
    const auto bytes = offer_bytes();
    auto frame = decode_frame(bytes);
    ASSERT_TRUE(frame.has_value()) << frame.error().message();
    EXPECT_EQ(frame->type, MessageType::Offer);
    auto state = decode_state(frame->payload);
    ASSERT_TRUE(state.has_value()) << state.error().message();
    EXPECT_EQ(*state, sample_state());
    EXPECT_EQ(bytes.size(), frame_header_bytes + 4 + 4 + 8 + 1 + 3 + 4 + 1 + 4 + 4 + 2);
}

TEST(Codec_test, HeaderLayoutIsLittleEndianMagicVersionTypeLength) {
    const auto bytes = offer_bytes();
    EXPECT_EQ(std::string(bytes.begin(), bytes.begin() + 4), "VNLT");
    EXPECT_EQ(bytes[4], protocol_version);
    EXPECT_EQ(bytes[5], 0);
    EXPECT_EQ(bytes[6], static_cast<std::uint8_t>(MessageType::Offer));
    EXPECT_EQ(bytes[8], bytes.size() - frame_header_bytes);
}

TEST(Codec_test, LT_STATE_02_EveryTruncationIsRejected) {
    const auto bytes = offer_bytes();
    for (std::size_t size = 0; size < bytes.size(); ++size) {
        auto frame = decode_frame(std::span(bytes).first(size));
        ASSERT_FALSE(frame.has_value()) << size;
        EXPECT_EQ(frame.error().code, LivetapErrc::Truncated) << size << ": " << frame.error().message();
    }
}

TEST(Codec_test, LT_STATE_02_EveryFlippedBitIsCaught) {
    const auto bytes = offer_bytes();
    for (std::size_t bit = 0; bit < bytes.size() * 8; ++bit) {
        auto corrupt = bytes;
        corrupt[bit / 8] ^= static_cast<std::uint8_t>(1U << (bit % 8));
        auto frame = decode_frame(corrupt);
        ASSERT_FALSE(frame.has_value()) << "bit " << bit << " flipped went unnoticed";
    }
}

TEST(Codec_test, LT_STATE_02_CorruptPayloadIsAChecksumMismatch) {
    auto bytes = offer_bytes();
    bytes[frame_header_bytes + 9] ^= 0x40;
    auto frame = decode_frame(bytes);
    ASSERT_FALSE(frame.has_value());
    EXPECT_EQ(frame.error().code, LivetapErrc::ChecksumMismatch);
}

TEST(Codec_test, LT_STATE_02_BadMagicAndVersionMismatch) {
    auto bytes = offer_bytes();
    bytes[0] = 'X';
    auto frame = decode_frame(bytes);
    ASSERT_FALSE(frame.has_value());
    EXPECT_EQ(frame.error().code, LivetapErrc::BadMagic);

    bytes = offer_bytes();
    bytes[4] = 2;  // a future version, correctly sealed
    reseal(bytes);
    frame = decode_frame(bytes);
    ASSERT_FALSE(frame.has_value());
    EXPECT_EQ(frame.error().code, LivetapErrc::UnsupportedVersion);
    EXPECT_NE(frame.error().message().find("version 2, this side speaks 1"), std::string::npos)
        << frame.error().message();
}

TEST(Codec_test, LT_STATE_02_OversizedMessages) {
    const std::vector<std::uint8_t> big(max_message_bytes - frame_header_bytes + 1, 0);
    auto encoded = encode_frame(MessageType::Offer, big);
    ASSERT_FALSE(encoded.has_value());
    EXPECT_EQ(encoded.error().code, LivetapErrc::Oversized);

    auto fits = encode_frame(MessageType::Offer, std::span(big).first(big.size() - 1));
    ASSERT_TRUE(fits.has_value());
    EXPECT_EQ(fits->size(), max_message_bytes);

    auto bytes = offer_bytes();
    put_u32(bytes, 8, 1U << 31);  // a declared length far over the limit
    auto frame = decode_frame(bytes);
    ASSERT_FALSE(frame.has_value());
    EXPECT_EQ(frame.error().code, LivetapErrc::Oversized);
}

TEST(Codec_test, LT_STATE_02_TrailingBytesAndUnknownTypeAreMalformed) {
    auto bytes = offer_bytes();
    bytes.push_back(0);
    auto frame = decode_frame(bytes);
    ASSERT_FALSE(frame.has_value());
    EXPECT_EQ(frame.error().code, LivetapErrc::Malformed);

    bytes = offer_bytes();
    bytes[6] = 99;
    reseal(bytes);
    frame = decode_frame(bytes);
    ASSERT_FALSE(frame.has_value());
    EXPECT_EQ(frame.error().code, LivetapErrc::Malformed);
    EXPECT_NE(frame.error().message().find("type 99"), std::string::npos);
}

TEST(Codec_test, LT_STATE_02_StatePayloadShortLongOrOutOfRange) {
    auto payload = *encode_state(sample_state());
    for (std::size_t size = 0; size < payload.size(); ++size) {
        auto state = decode_state(std::span(payload).first(size));
        ASSERT_FALSE(state.has_value()) << size;
        EXPECT_EQ(state.error().code, LivetapErrc::Malformed);
    }
    auto state = decode_state(std::span(payload).first(10));
    EXPECT_NE(state.error().message().find("ends inside netns_inode"), std::string::npos) << state.error().message();

    auto longer = payload;
    longer.push_back(1);
    EXPECT_EQ(decode_state(longer).error().code, LivetapErrc::Malformed);

    auto zero_queues = payload;
    zero_queues[zero_queues.size() - 2] = 0;
    zero_queues[zero_queues.size() - 1] = 0;
    EXPECT_EQ(decode_state(zero_queues).error().code, LivetapErrc::Malformed);

    auto bad_le = payload;
    bad_le[4 + 4 + 8 + 1 + 3 + 4] = 2;
    EXPECT_EQ(decode_state(bad_le).error().code, LivetapErrc::Malformed);
}

TEST(Codec_test, StatesThatCannotTravelAreRefusedAtEncoding) {
    TapState state = sample_state();
    state.name = "";
    EXPECT_EQ(encode_state(state).error().code, LivetapErrc::InvalidArgument);
    state.name = std::string(IFNAMSIZ, 'x');
    EXPECT_EQ(encode_state(state).error().code, LivetapErrc::InvalidArgument);
    state = sample_state();
    state.queue_count = static_cast<std::uint16_t>(max_queues + 1);
    EXPECT_EQ(encode_state(state).error().code, LivetapErrc::InvalidArgument);
}

TEST(Codec_test, RejectionRoundTripsAndUnknownCodesAreMalformed) {
    const Rejection rejection{LivetapErrc::StateMismatch, "ifindex: the state says 7, the device says 9"};
    auto decoded = decode_rejection(encode_rejection(rejection));
    ASSERT_TRUE(decoded.has_value());
    EXPECT_EQ(decoded->code, LivetapErrc::StateMismatch);
    EXPECT_EQ(decoded->reason, rejection.reason);

    auto bytes = encode_rejection(rejection);
    bytes[0] = 0xff;
    bytes[1] = 0x7f;
    EXPECT_EQ(decode_rejection(bytes).error().code, LivetapErrc::Malformed);
    EXPECT_EQ(decode_rejection(std::span(bytes).first(3)).error().code, LivetapErrc::Malformed);

    const Rejection long_reason{LivetapErrc::Rejected, std::string(5000, 'r')};
    EXPECT_EQ(decode_rejection(encode_rejection(long_reason))->reason.size(), max_reason_bytes);
}

TEST(Codec_test, NoBackendFrameRoundTripsWithItsReason) {
    const std::string why = "the migration channel is not a unix socket";
    const std::vector<std::uint8_t> payload(why.begin(), why.end());
    auto bytes = encode_frame(MessageType::NoBackend, payload);
    ASSERT_TRUE(bytes.has_value());
    auto frame = decode_frame(*bytes);
    ASSERT_TRUE(frame.has_value()) << frame.error().message();
    EXPECT_EQ(frame->type, MessageType::NoBackend);
    EXPECT_EQ(frame->payload, payload);
    EXPECT_EQ(to_string(MessageType::NoBackend), "NoBackend");
}

TEST(Codec_test, MessageTypesKeepTheirWireValues) {
    static_assert(sizeof(MessageType) == sizeof(std::uint16_t));
    EXPECT_EQ(static_cast<int>(MessageType::Offer), 1);
    EXPECT_EQ(static_cast<int>(MessageType::Accept), 2);
    EXPECT_EQ(static_cast<int>(MessageType::Reject), 3);
    EXPECT_EQ(static_cast<int>(MessageType::Commit), 4);
    EXPECT_EQ(static_cast<int>(MessageType::NoBackend), 5);
    EXPECT_EQ(to_string(MessageType::Commit), "Commit");
}
