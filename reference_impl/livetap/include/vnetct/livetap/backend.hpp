// The reference backend process, both ends of a live-TAP local migration, as
// a library (app/main.cpp is a thin shell over it). It is driven by lines on
// a control fd (stdin) and reports by lines on another (stdout):
//
//   source: opens and configures the TAP (the only side that ever opens
//           /dev/net/tun), serves it as a guest NIC. Reports "ready <state>",
//           then answers one line per command:
//             "handoff <channel>" (<channel>: "unix:<path>", a bare path, or
//               "tcp:<host>:<port>"): with both transfer switches on and a unix
//               channel (LT-CFG-01/04) it connects, waits for Ready, stops reading, offers
//               every queue with the state. "committed <counters>
//               stopped_reading_ns=<t> committed_ns=<t>" (and returns 0) or
//               "resumed <error>" (it serves again and waits for the next line).
//               Otherwise no fd travels: over a unix channel it tells the
//               target NoBackend (a target waiting for fds then fails,
//               LT-CFG-03), a tcp channel is not even connected, and it
//               answers "untransferred <why>" without having stopped reading.
//           The negative controls (each breaks LT-DATA-01 on purpose, so that
//           a harness can prove it sees the loss):
//             "pause <ms>": stops reading for <ms>, then serves again
//               (a blackout; beyond txqueuelen frames the TAP drops):
//               "unpaused stopped_reading_ns=<t> resumed_reading_ns=<t>".
//             "reopen [<ms>]" (the source only): stops reading for <ms>
//               (0 if not given), closes every queue and opens the TAP again
//               as at the start (a non-persistent TAP is destroyed and
//               created anew):
//               "reopened <state> stopped_reading_ns=<t> resumed_reading_ns=<t>".
//             "detach <ms>": stops reading for <ms>, detaches every queue
//               (TUNSETQUEUE IFF_DETACH_QUEUE, which purges what is queued)
//               and attaches it again (needs IFF_MULTI_QUEUE):
//               "reattached queues=<n> stopped_reading_ns=<t> resumed_reading_ns=<t>".
//             "counters": "counters <counters>".
//           A command that fails answers "error <message>" and serving goes on.
//   target: listens on a unix SOCK_SEQPACKET socket, takes one hand-off
//           (never opening /dev/net/tun, never reconfiguring), serves the
//           received queues until its control input ends.
//           Started with --ifname, --vnet-hdr 1 or --fd (options that
//           conflict with incoming fds) it refuses at once: "failed <error>"
//           naming them, exit 1 (LT-CFG-02).
//           A source that has not connected within --accept-timeout-ms
//           (default 120 s) ends it: "failed accept: no source connected
//           within <n> ms", exit 1. It dies with its parent (PR_SET_PDEATHSIG).
//           Reports "listening <path> uid=<n> cap_eff=<hex>" (who it runs as:
//           an unprivileged target needs no capability), then "offered <state>" when
//           --hold-offer-ms is given (it holds the validated offer that long
//           before it accepts: the moment to kill it mid-hand-off),
//           "serving <state> serving_ns=<t>" or "failed <error>". It then serves as the
//           source did and takes the same commands (but "reopen": it never
//           opens the TAP), so it may hand the queues on to a next target;
//           at the end of its input "stopped <counters> serving_ns=<t>".
//           --serve-delay-ms: waits that long after the Commit before it
//           reads (the source has exited meanwhile).
// <counters>: "frames=<n> echoed=<n> first_seq=<n|-> last_seq=<n|->
// arp=<n> write_errors=<n> queue_frames=<n>,<n>... streams=<id hex>:<first>-<last>:<n>;...
// runs=<id hex>:<first>-<last>,<first>-<last>...[,...];..." (runs: StreamSeen::runs, "..."
// when truncated; "-" for none)
// Times are CLOCK_MONOTONIC ns. A source whose control input ends stops
// serving, reports "stopped <counters>" and returns 0. Exit codes: 0 done,
// 1 failed, 2 bad usage. --label <text> is ignored (a tag for process sweeps).
#pragma once

#include <string>

#include "vnetct/livetap/guest_nic.hpp"
#include "vnetct/livetap/tap_state.hpp"
#include "vnetct/livetap/transfer_config.hpp"

namespace vnetct::livetap {

// The switches of LT-CFG-01 on the side that hands its queues on (the
// channel, LT-CFG-04, is the handoff command's argument).
struct TransferSwitches {
    bool migration_parameter = true;  // --transfer-parameter
    bool device_option = true;        // --transfer-device
};

struct SourceOptions {
    TapSpec tap;
    GuestIdentity guest;
    TransferSwitches transfer;
    // A seeded bug for the harness's self-check (--seed-fault read-after-commit):
    // after the Commit the source reads its old queues for this long and does
    // not count it in "committed" (breaks LT-XFER-02). 0: a correct source.
    int read_after_commit_ms = 0;
    // A seeded slowness for the blackout's accounting check (--seed-fault
    // stop-before-connect): the source stops reading before it connects, as
    // it once did, so the target's wake-up for the connection falls in the
    // blackout (blackout_accounting_problems names it). No rule is broken.
    bool stop_before_connect = false;
};

struct TargetOptions {
    std::string listen_path;
    GuestIdentity guest;
    int accept_timeout_ms = 120'000;  // no source connected by then: "failed accept: ...", exit 1
    int hold_offer_ms = 0;   // > 0: report "offered" and hold the offer this long before accepting
    int serve_delay_ms = 0;  // wait this long after the Commit before reading
    TransferSwitches transfer;  // when it hands the queues on
    TapNetdevOptions netdev{.incoming_fds = true};  // a target always waits for fds (LT-CFG-02)
    // A seeded bug for the harness's self-check (--seed-fault change-offloads):
    // the target turns checksum offload (and with it TSO) off
    // when it was on, on when it was off, on the device it was handed (breaks
    // LT-XFER-03 and LT-DATA-02) and still reports the state it received.
    bool change_offloads = false;
};

int run_source(const SourceOptions& options, int control_in, int control_out);
int run_target(const TargetOptions& options, int control_in, int control_out);

// The counters as the control lines print them (see above).
[[nodiscard]] std::string describe(const GuestNicCounters& counters);
// `total` followed by `later` (a reader that ran after it on the same queues).
[[nodiscard]] GuestNicCounters merge(const GuestNicCounters& total, const GuestNicCounters& later);

// argv without the program name: "source --netns NS --tap NAME [--queues N]
// [--multi-queue 0|1] [--vnet-hdr-size 10|12] [--offloads BITS] [--sndbuf BYTES]" or "target
// --listen PATH [--hold-offer-ms MS] [--serve-delay-ms MS] [--ifname NAME] [--vnet-hdr 0|1]
// [--fd N]"; either with [--transfer-parameter 0|1] [--transfer-device 0|1] [--label TEXT]
// [--echo-streams 0|1] (0: stream datagrams are counted, not echoed: GuestIdentity);
// a source also with [--seed-fault read-after-commit|stop-before-connect] (see SourceOptions), a target
// with [--seed-fault change-offloads] (see TargetOptions).
int backend_main(int argc, char** argv);

}  // namespace vnetct::livetap
