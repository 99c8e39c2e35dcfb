#include "vnetct/sriov/setup.hpp"

namespace vnetct::sriov {
namespace {

nlohmann::json state_json(const VfLinkState& state) {
    nlohmann::json previous{{"mac", state.mac}, {"vlan", state.vlan}, {"qos", state.qos}};
    if (state.trust) {
        previous["trust"] = *state.trust;
    }
    if (state.spoofchk) {
        previous["spoofchk"] = *state.spoofchk;
    }
    return previous;
}

bool changes_link(const VfSettings& settings) {
    return settings.mac || settings.vlan || settings.trust || settings.spoofchk;
}

}  // namespace

SriovResult<std::vector<PreparedVf>> prepare(const SetupRequest& request, Sysfs& sysfs, const VfLink& link,
                                             Journal& journal) {
    auto total = sysfs.total_vfs(request.pf);
    if (!total) {
        return tl::unexpected(total.error());
    }
    if (request.num_vfs < 1 || request.num_vfs > *total) {
        return fail(SriovErrc::TooManyVfs, request.pf + ": num_vfs " + std::to_string(request.num_vfs) +
                                               ", sriov_totalvfs is " + std::to_string(*total));
    }
    for (const auto& vf : request.vfs) {
        if (vf.index < 0 || vf.index >= request.num_vfs) {
            return fail(SriovErrc::NoSuchVf, request.pf + " VF " + std::to_string(vf.index) + " with num_vfs " +
                                                 std::to_string(request.num_vfs));
        }
    }
    if (request.bind_vfio && !sysfs.driver_loaded("vfio-pci")) {
        return fail(SriovErrc::DriverMissing,
                    "vfio-pci (no " + (sysfs.root() / "bus/pci/drivers/vfio-pci").string() + "; modprobe vfio-pci)");
    }

    auto current = sysfs.num_vfs(request.pf);
    if (!current) {
        return tl::unexpected(current.error());
    }
    if (*current != request.num_vfs) {
        if (auto recorded = journal.record({{"op", "num_vfs"}, {"pf", request.pf}, {"previous", *current}});
            !recorded) {
            return tl::unexpected(recorded.error());
        }
        if (auto done = sysfs.set_num_vfs(request.pf, request.num_vfs); !done) {
            return tl::unexpected(done.error());
        }
    }

    std::vector<PreparedVf> prepared;
    for (const auto& vf : request.vfs) {
        PreparedVf entry;
        entry.index = vf.index;
        auto address = sysfs.vf_address(request.pf, vf.index);
        if (!address) {
            return tl::unexpected(address.error());
        }
        entry.address = *address;
        if (changes_link(vf.settings)) {
            auto before = link.read(request.pf, vf.index);
            if (!before) {
                return tl::unexpected(before.error());
            }
            if (auto recorded = journal.record({{"op", "vf_link"},
                                                {"pf", request.pf},
                                                {"vf", vf.index},
                                                {"previous", state_json(*before)}});
                !recorded) {
                return tl::unexpected(recorded.error());
            }
            if (auto done = link.apply(request.pf, vf.index, vf.settings); !done) {
                return tl::unexpected(done.error());
            }
        }
        if (request.bind_vfio) {
            auto group = sysfs.check_group_viable(entry.address);
            if (!group) {
                return tl::unexpected(group.error());
            }
            entry.iommu_group = group->id;
            auto driver = sysfs.driver(entry.address);
            auto override_value = sysfs.driver_override(entry.address);
            if (!driver) {
                return tl::unexpected(driver.error());
            }
            if (!override_value) {
                return tl::unexpected(override_value.error());
            }
            if (auto recorded = journal.record({{"op", "binding"},
                                                {"address", entry.address},
                                                {"previous_driver", *driver},
                                                {"previous_override", *override_value}});
                !recorded) {
                return tl::unexpected(recorded.error());
            }
            if (auto bound = sysfs.bind(entry.address, "vfio-pci"); !bound) {
                return tl::unexpected(bound.error());
            }
        }
        auto driver = sysfs.driver(entry.address);
        entry.driver = driver ? *driver : std::string();
        prepared.push_back(std::move(entry));
    }
    return prepared;
}

}  // namespace vnetct::sriov
