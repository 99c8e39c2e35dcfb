// The hand-off's binary encoding (LT-STATE-02). Every message is one frame:
//
//   magic u32 "VNLT" | version u16 | type u16 | payload length u32 | crc32 u32 | payload
//
// little-endian; the CRC-32 (IEEE 802.3, as zlib's crc32) covers the first 12
// header bytes and the payload. A frame is at most max_message_bytes long.
//
// Payloads, version 1:
//   Offer  (source -> target, with every queue fd in SCM_RIGHTS): the TapState
//          tun_flags u32 | ifindex i32 | netns_inode u64 | name_len u8 | name |
//          vnet_hdr_size i32 | vnet_le u8 | sndbuf i32 | offloads u32 | queue_count u16
//   Accept (target -> source): empty; the target validated the fds and is ready
//   Reject (target -> source): code u16 (LivetapErrc) | reason_len u16 | reason
//   Commit (source -> target): empty; the source has stopped for good and the
//          fds are the target's
//   Ready  (target -> source, first on a new connection): empty; the target is
//          awake and waits for the Offer (the source stops reading only then)
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "vnetct/livetap/errors.hpp"
#include "vnetct/livetap/tap_state.hpp"

namespace vnetct::livetap {

inline constexpr std::uint32_t frame_magic = 0x544c4e56;  // "VNLT" in memory order
inline constexpr std::uint16_t protocol_version = 1;
inline constexpr std::size_t frame_header_bytes = 16;
inline constexpr std::size_t max_message_bytes = 4096;
inline constexpr std::size_t max_reason_bytes = 1024;

// NoBackend: the source migrates without its backend (a switch is off or the
// channel is not local, LT-CFG-01/04); the payload says why, in UTF-8, and no
// fd travels with it. A target waiting for fds fails on it (LT-CFG-03).
// X(Name, wire value, "text"): the values are the frame's type field.
#define VNETCT_LIVETAP_MESSAGE_TYPES(X) \
    X(Offer, 1, "Offer")                \
    X(Accept, 2, "Accept")              \
    X(Reject, 3, "Reject")              \
    X(Commit, 4, "Commit")              \
    X(NoBackend, 5, "NoBackend")        \
    X(Ready, 6, "Ready")
VNETCT_DEFINE_VALUED_ENUM(MessageType, std::uint16_t, VNETCT_LIVETAP_MESSAGE_TYPES)

struct Frame {
    MessageType type = MessageType::Offer;
    std::vector<std::uint8_t> payload;
};

struct Rejection {
    LivetapErrc code = LivetapErrc::Rejected;
    std::string reason;
};

// CRC-32 (IEEE), continuing from `crc` (0 to start).
[[nodiscard]] std::uint32_t crc32(std::span<const std::uint8_t> bytes, std::uint32_t crc = 0);

// Oversized when the payload does not fit in max_message_bytes.
[[nodiscard]] LivetapResult<std::vector<std::uint8_t>> encode_frame(MessageType type,
                                                                    std::span<const std::uint8_t> payload);
// Checks, in order: Truncated (shorter than the header), BadMagic,
// UnsupportedVersion, Oversized (declared length over the limit), Truncated
// (shorter than the declared length), Malformed (bytes after it),
// ChecksumMismatch, Malformed (unknown type).
[[nodiscard]] LivetapResult<Frame> decode_frame(std::span<const std::uint8_t> bytes);

// InvalidArgument for a state that cannot be encoded (name empty or too long,
// queue count 0 or over max_queues, vnet_le not 0/1 ...).
[[nodiscard]] LivetapResult<std::vector<std::uint8_t>> encode_state(const TapState& state);
// Malformed naming the field for a payload that is short, long or out of range.
[[nodiscard]] LivetapResult<TapState> decode_state(std::span<const std::uint8_t> payload);

[[nodiscard]] std::vector<std::uint8_t> encode_rejection(const Rejection& rejection);
[[nodiscard]] LivetapResult<Rejection> decode_rejection(std::span<const std::uint8_t> payload);

}  // namespace vnetct::livetap
