// The VF set-up of a certification run, in the order the hardware needs it:
//   1. the PF's VF count (sriov_numvfs; 0 first if a different count is set),
//   2. per VF: MAC, VLAN, trust, spoof check through the PF (rtnetlink),
//   3. per VF: the IOMMU group checked viable for vfio, then vfio-pci bound
//      (driver_override, unbind, drivers_probe).
// Every change is recorded in the journal first; on an error the caller
// restores the journal (prepare() itself does not, so the caller sees both
// the error and the restore report).
#pragma once

#include <string>
#include <vector>

#include "vnetct/sriov/journal.hpp"
#include "vnetct/sriov/sysfs.hpp"
#include "vnetct/sriov/vf_link.hpp"

namespace vnetct::sriov {

struct VfRequest {
    int index = 0;
    VfSettings settings;
};

struct SetupRequest {
    std::string pf;
    int num_vfs = 1;
    std::vector<VfRequest> vfs;
    bool bind_vfio = true;
};

struct PreparedVf {
    int index = 0;
    std::string address;      // the VF's PCI address, for -device vfio-pci,host=
    std::string iommu_group;  // empty without vfio binding
    std::string driver;       // bound now
};

SriovResult<std::vector<PreparedVf>> prepare(const SetupRequest& request, Sysfs& sysfs, const VfLink& link,
                                             Journal& journal);

}  // namespace vnetct::sriov
