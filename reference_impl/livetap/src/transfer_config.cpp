#include "vnetct/livetap/transfer_config.hpp"

#include <string>
#include <utility>

namespace vnetct::livetap {

bool transfers_fds(const TransferConfig& config) {
    return config.migration_parameter && config.device_option && config.unix_channel;
}

LivetapResult<void> check_tap_netdev(const TapNetdevOptions& options) {
    if (!options.incoming_fds) {
        return {};
    }
    std::string conflicts;
    for (const auto& [given, name] : {std::pair{options.ifname, "ifname"}, std::pair{options.vnet_hdr, "vnet_hdr"},
                                      std::pair{options.fd, "fd"}}) {
        if (given) {
            conflicts += conflicts.empty() ? name : std::string(", ") + name;
        }
    }
    if (!conflicts.empty()) {
        return fail(LivetapErrc::ConflictingOptions, "incoming-fds with " + conflicts);
    }
    return {};
}

LivetapResult<void> check_target(const TransferConfig& config, bool target_waits_for_fds) {
    if (!target_waits_for_fds || transfers_fds(config)) {
        return {};
    }
    std::string why;
    if (!config.migration_parameter) {
        why = "the migration parameter backend-transfer is off";
    } else if (!config.device_option) {
        why = "the device's backend-transfer is off";
    } else {
        why = "the migration channel is not a unix socket";
    }
    return fail(LivetapErrc::NoIncomingFds, why);
}

}  // namespace vnetct::livetap
