// Error codes of the host agent daemon (the host side run where the host is
// remote, e.g. inside an L1 guest). One list: the enum and its sentences are
// generated from it. A reply's error carries the code's name; errors of the
// libraries it calls (HostErrc, SriovErrc) keep their own names.
#pragma once

#include "vnetct/common/result.hpp"

namespace vnetct::remote {

// X(Name, "sentence")
#define VNETCT_REMOTE_ERRORS(X)                                                     \
    X(Malformed, "the line is not JSON")                                            \
    X(Oversized, "the line exceeds the size limit")                                 \
    X(BadRequest, "the request is malformed")                                       \
    X(UnknownRequest, "no such request")                                            \
    X(NoSuchProcess, "no such process")                                             \
    X(NoSuchChannel, "no such channel")                                             \
    X(LimitReached, "too many processes or channels")                               \
    X(Timeout, "deadline passed")                                                   \
    X(FileFailed, "the file operation failed")                                      \
    X(WindowExceeded, "the peer sent more than the channel's window")               \
    X(BadData, "the channel data is not valid base64")                              \
    X(StreamFailed, "reading or writing the stream failed")

VNETCT_DEFINE_ERRC(RemoteErrc, VNETCT_REMOTE_ERRORS)

template <typename T>
using RemoteResult = vnetct::Result<T, RemoteErrc>;

}  // namespace vnetct::remote
