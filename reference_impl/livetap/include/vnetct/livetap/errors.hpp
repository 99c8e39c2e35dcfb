// Error codes of the live-TAP hand-off (state codec, channel, validation,
// configuration). One list: the enum and its sentences are generated from it.
#pragma once

#include "vnetct/common/result.hpp"

namespace vnetct::livetap {

// X(Name, "sentence")
#define VNETCT_LIVETAP_ERRORS(X)                                                         \
    X(InvalidArgument, "invalid argument")                                               \
    X(Io, "system call failed")                                                          \
    X(Truncated, "hand-off message is shorter than its header or its declared length")   \
    X(Oversized, "hand-off message exceeds the size limit")                              \
    X(BadMagic, "not a live-TAP hand-off message (bad magic)")                           \
    X(UnsupportedVersion, "unsupported live-TAP hand-off protocol version")              \
    X(ChecksumMismatch, "hand-off message checksum does not match its contents")         \
    X(Malformed, "malformed hand-off message")                                           \
    X(UnexpectedMessage, "unexpected hand-off message type")                             \
    X(FdCountMismatch, "the fds received differ in number from the state's queue count") \
    X(StateMismatch, "the received fds do not match the transferred TAP state")          \
    X(PeerClosed, "the peer closed the hand-off channel")                                \
    X(Rejected, "the target rejected the hand-off")                                      \
    X(Timeout, "deadline passed")                                                        \
    X(NotLocal, "the migration channel is not local (not a unix socket)")                \
    X(TransferNotEnabled, "backend transfer is not enabled")                             \
    X(ConflictingOptions, "incoming-fds conflicts with another TAP option")              \
    X(NoIncomingFds, "the target waits for incoming fds the migration does not transfer")

VNETCT_DEFINE_ERRC(LivetapErrc, VNETCT_LIVETAP_ERRORS)

template <typename T>
using LivetapResult = vnetct::Result<T, LivetapErrc>;

using LivetapError = vnetct::Error<LivetapErrc>;

}  // namespace vnetct::livetap
