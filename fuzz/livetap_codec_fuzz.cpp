// The live-TAP hand-off codec (LT-STATE-02) on hostile bytes: a frame as read
// from the channel, and a frame's payload as Offer (TapState) and Reject.
// Invariants: what decodes re-encodes to the same bytes (frames, rejections)
// or to a state that decodes equal (Offer payloads).
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "fuzz_support.hpp"
#include "vnetct/livetap/codec.hpp"

using namespace vnetct::livetap;

namespace {

void payload_round_trips(std::span<const std::uint8_t> payload) {
    if (auto state = decode_state(payload)) {
        auto encoded = encode_state(*state);
        VNETCT_FUZZ_CHECK(encoded.has_value());
        auto again = decode_state(*encoded);
        VNETCT_FUZZ_CHECK(again.has_value() && *again == *state);
    }
    if (auto rejection = decode_rejection(payload)) {
        const std::vector<std::uint8_t> encoded = encode_rejection(*rejection);
        auto again = decode_rejection(encoded);
        VNETCT_FUZZ_CHECK(again.has_value() && again->code == rejection->code && again->reason == rejection->reason);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::uint8_t> input(data, size);
    vnetct::fuzz::maybe_seeded_bug(input);
    if (auto frame = decode_frame(input)) {
        VNETCT_FUZZ_CHECK(frame->payload.size() + frame_header_bytes <= max_message_bytes);
        auto encoded = encode_frame(frame->type, frame->payload);
        VNETCT_FUZZ_CHECK(encoded.has_value());
        VNETCT_FUZZ_CHECK(std::vector<std::uint8_t>(input.begin(), input.end()) == *encoded);
        payload_round_trips(frame->payload);
    }
    // Payloads reach decode_state only inside a valid frame; try the raw
    // bytes too, so the fuzzer need not forge a CRC to get there.
    payload_round_trips(input);
    return 0;
}
