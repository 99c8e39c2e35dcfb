// Error codes of the host side (QMP client, guest agent client, QEMU launcher,
// topology). One list: the enum and its sentences are generated from it.
#pragma once

#include "vnetct/common/result.hpp"

namespace vnetct::host_agent {

// X(Name, "sentence")
#define VNETCT_HOST_ERRORS(X)                                                   \
    X(ConnectFailed, "could not connect to the socket")                         \
    X(Closed, "the peer closed the connection")                                 \
    X(Timeout, "deadline passed")                                               \
    X(Malformed, "malformed JSON from the peer")                                \
    X(Oversized, "message from the peer exceeds the size limit")                \
    X(Flooded, "the peer sent more than the harness keeps")                     \
    X(Protocol, "unexpected message from the peer")                             \
    X(CommandFailed, "the command returned an error")                           \
    X(Io, "input/output error")                                                 \
    X(SpawnFailed, "could not start the process")                               \
    X(ProcessFailed, "the process failed")                                      \
    X(InvalidArgument, "invalid argument")                                      \
    X(TopologyFailed, "could not build the network topology")                  \
    X(Interrupted, "interrupted while waiting (Ctrl-C)")                        \
    X(Busy, "another caller is using this client (one at a time)")

VNETCT_DEFINE_ERRC(HostErrc, VNETCT_HOST_ERRORS)

template <typename T>
using HostResult = vnetct::Result<T, HostErrc>;

}  // namespace vnetct::host_agent
