// The configuration rules of a live-TAP migration (LT-CFG-01..04) as pure
// decisions, for the cases to compare a QEMU's behaviour against.
#pragma once

#include "vnetct/livetap/errors.hpp"

namespace vnetct::livetap {

struct TransferConfig {
    bool migration_parameter = false;  // migration parameter backend-transfer (later: local)
    bool device_option = false;        // virtio-net backend-transfer=on
    bool unix_channel = false;         // the migration URI is a unix socket
};

// The options given to a TAP netdev.
struct TapNetdevOptions {
    bool incoming_fds = false;
    bool ifname = false;
    bool vnet_hdr = false;
    bool fd = false;  // fd= or fds=
};

// LT-CFG-01, LT-CFG-04: fds travel only when both switches are on and the
// migration is local.
[[nodiscard]] bool transfers_fds(const TransferConfig& config);

// LT-CFG-02: ConflictingOptions naming every option given with incoming-fds.
[[nodiscard]] LivetapResult<void> check_tap_netdev(const TapNetdevOptions& options);

// LT-CFG-03: a target that waits for incoming fds fails, with NoIncomingFds
// saying why no fds come (which switch is off, or the channel not local),
// when the migration does not transfer them.
[[nodiscard]] LivetapResult<void> check_target(const TransferConfig& config, bool target_waits_for_fds);

}  // namespace vnetct::livetap
