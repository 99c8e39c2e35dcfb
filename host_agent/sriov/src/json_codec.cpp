#include "vnetct/sriov/json_codec.hpp"

#include <optional>
#include <string>

namespace vnetct::sriov {
namespace {

// The value at `key` of `object` as a T: nullopt when absent or null (if
// `optional`), InvalidArgument naming `where`.key when of another type.
template <typename T>
SriovResult<std::optional<T>> field(const nlohmann::json& object, const char* key, const std::string& where,
                                    bool optional) {
    const auto found = object.find(key);
    if (found == object.end() || found->is_null()) {
        if (optional) {
            return std::optional<T>{};
        }
        return fail(SriovErrc::InvalidArgument, where + "." + key + " is missing");
    }
    bool fits = false;
    if constexpr (std::is_same_v<T, bool>) {
        fits = found->is_boolean();
    } else if constexpr (std::is_same_v<T, int>) {
        fits = found->is_number_integer() && found->get<long long>() >= -(1LL << 31) &&
               found->get<long long>() < (1LL << 31);
    } else {
        fits = found->is_string();
    }
    if (!fits) {
        return fail(SriovErrc::InvalidArgument, where + "." + key + " has the wrong type: " +
                                                    found->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                                                        .substr(0, 80));
    }
    return std::optional<T>{found->get<T>()};
}

}  // namespace

SriovResult<SetupRequest> setup_request_from_json(const nlohmann::json& request) {
    if (!request.is_object()) {
        return fail(SriovErrc::InvalidArgument, "the request is not an object");
    }
    SetupRequest setup;
    auto pf = field<std::string>(request, "pf", "request", false);
    auto num_vfs = field<int>(request, "num_vfs", "request", false);
    auto bind_vfio = field<bool>(request, "bind_vfio", "request", false);
    for (const auto* error : {pf ? nullptr : &pf.error(), num_vfs ? nullptr : &num_vfs.error(),
                              bind_vfio ? nullptr : &bind_vfio.error()}) {
        if (error != nullptr) {
            return tl::unexpected(*error);
        }
    }
    setup.pf = **pf;
    setup.num_vfs = **num_vfs;
    setup.bind_vfio = **bind_vfio;
    const auto vfs = request.find("vfs");
    if (vfs == request.end() || !vfs->is_array()) {
        return fail(SriovErrc::InvalidArgument, "request.vfs must be a list");
    }
    for (std::size_t i = 0; i < vfs->size(); ++i) {
        const nlohmann::json& entry = (*vfs)[i];
        const std::string where = "request.vfs[" + std::to_string(i) + "]";
        if (!entry.is_object()) {
            return fail(SriovErrc::InvalidArgument, where + " is not an object");
        }
        auto index = field<int>(entry, "index", where, false);
        auto mac = field<std::string>(entry, "mac", where, true);
        auto vlan = field<int>(entry, "vlan", where, true);
        auto qos = field<int>(entry, "qos", where, true);
        auto trust = field<bool>(entry, "trust", where, true);
        auto spoofchk = field<bool>(entry, "spoofchk", where, true);
        if (!index) return tl::unexpected(index.error());
        if (!mac) return tl::unexpected(mac.error());
        if (!vlan) return tl::unexpected(vlan.error());
        if (!qos) return tl::unexpected(qos.error());
        if (!trust) return tl::unexpected(trust.error());
        if (!spoofchk) return tl::unexpected(spoofchk.error());
        VfRequest vf;
        vf.index = **index;
        vf.settings.mac = *mac;
        vf.settings.vlan = *vlan;
        vf.settings.qos = qos->value_or(0);
        vf.settings.trust = *trust;
        vf.settings.spoofchk = *spoofchk;
        setup.vfs.push_back(std::move(vf));
    }
    return setup;
}

nlohmann::json prepared_to_json(const std::vector<PreparedVf>& vfs) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& vf : vfs) {
        list.push_back({{"index", vf.index}, {"address", vf.address}, {"iommu_group", vf.iommu_group},
                        {"driver", vf.driver}});
    }
    return list;
}

nlohmann::json restore_report_to_json(const Journal::Report& report, const Journal& journal) {
    return {{"undone", report.undone}, {"failures", report.failures}, {"left", journal.entries().size()}};
}

}  // namespace vnetct::sriov
