// Error codes of the SR-IOV module. One list: the enum and its sentences are
// generated from it.
#pragma once

#include "vnetct/common/result.hpp"

namespace vnetct::sriov {

// X(Name, "sentence")
#define VNETCT_SRIOV_ERRORS(X)                                                          \
    X(NoSuchPf, "no such physical function netdev")                                     \
    X(NotSriov, "the device has no SR-IOV capability")                                  \
    X(Malformed, "unexpected content in sysfs")                                         \
    X(TooManyVfs, "more VFs requested than the device supports")                        \
    X(NoSuchVf, "no such virtual function")                                             \
    X(NoIommuGroup, "the device is in no IOMMU group (IOMMU off?)")                     \
    X(GroupNotViable, "the IOMMU group holds a device that vfio cannot share")          \
    X(DriverMissing, "the driver is not loaded")                                        \
    X(BindFailed, "binding the driver did not take effect")                             \
    X(SysfsRead, "could not read from sysfs")                                           \
    X(SysfsWrite, "could not write to sysfs")                                           \
    X(VfOpsUnsupported, "the PF does not support VF configuration through netlink")     \
    X(CommandFailed, "a helper command failed")                                         \
    X(InvalidArgument, "invalid argument")                                              \
    X(JournalIo, "could not read or write the undo journal")                            \
    X(RestoreIncomplete, "some changes could not be undone")

VNETCT_DEFINE_ERRC(SriovErrc, VNETCT_SRIOV_ERRORS)

template <typename T>
using SriovResult = vnetct::Result<T, SriovErrc>;

}  // namespace vnetct::sriov
