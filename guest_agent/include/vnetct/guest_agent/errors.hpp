// Error codes of the guest agent. One list: the enum and its sentences are
// generated from it, so reply messages cannot drift from the codes.
#pragma once

#include "vnetct/common/result.hpp"

namespace vnetct::guest_agent {

// X(Name, "sentence")
#define VNETCT_GUEST_ERRORS(X)                                                  \
    X(BadRequest, "malformed request")                                          \
    X(UnknownCommand, "unknown command")                                        \
    X(BadArgument, "invalid argument")                                          \
    X(LineTooLong, "request line exceeds 1 MiB and was discarded")              \
    X(PortNotFound, "no virtio-serial port named org.vnetct.agent")             \
    X(PortOpenFailed, "could not open the agent port")                          \
    X(SysfsReadFailed, "could not read sysfs")                                  \
    X(EthtoolFailed, "ethtool ioctl failed")                                    \
    X(InvalidFeatures, "virtio features string is not made of '0' and '1'")     \
    X(ModuleLoadFailed, "could not load kernel module")                         \
    X(KernelLogFailed, "could not read the kernel log")                         \
    X(NetlinkFailed, "rtnetlink request failed")                                \
    X(UnknownInterface, "no such network interface")                            \
    X(UdpEchoFailed, "could not start the UDP echo service")                    \
    X(SystemCallFailed, "system call failed")

VNETCT_DEFINE_ERRC(GuestErrc, VNETCT_GUEST_ERRORS)

template <typename T>
using GuestResult = vnetct::Result<T, GuestErrc>;

// "<what>: <strerror(errno_value)>"
[[nodiscard]] std::string describe_errno(std::string_view what, int errno_value);

}  // namespace vnetct::guest_agent
