// The reference backend process, both ends of a live-TAP local migration, as
// a library (app/main.cpp is a thin shell over it). It is driven by lines on
// a control fd (stdin) and reports by lines on another (stdout):
//
//   source: opens and configures the TAP (the only side that ever opens
//           /dev/net/tun), serves it as a guest NIC, and on
//             "handoff <unix socket path>"
//           stops reading, connects, offers every queue with the state.
//           Reports "ready <state>", then "committed" (and returns 0) or
//           "resumed <error>" (it serves again and waits for the next line).
//   target: listens on a unix SOCK_SEQPACKET socket, takes one hand-off
//           (never opening /dev/net/tun, never reconfiguring), serves the
//           received queues until its control input ends.
//           Reports "listening <path>", "serving <state>" or "failed <error>",
//           and at the end "stopped frames=<n> echoed=<n> first_seq=<n|->".
// A source whose control input ends before a hand-off stops serving and
// returns 0. Exit codes: 0 done, 1 failed, 2 bad usage.
#pragma once

#include <string>

#include "vnetct/livetap/guest_nic.hpp"
#include "vnetct/livetap/tap_state.hpp"

namespace vnetct::livetap {

struct SourceOptions {
    TapSpec tap;
    GuestIdentity guest;
};

struct TargetOptions {
    std::string listen_path;
    GuestIdentity guest;
};

int run_source(const SourceOptions& options, int control_in, int control_out);
int run_target(const TargetOptions& options, int control_in, int control_out);

// argv without the program name: "source --netns NS --tap NAME [--queues N]
// [--vnet-hdr-size 10|12] [--offloads BITS]" or "target --listen PATH".
int backend_main(int argc, char** argv);

}  // namespace vnetct::livetap
