// What a sequence-numbered stream's record says, phase by phase: how many
// packets were sent, echoed, lost, duplicated, reordered, and the loss windows
// (runs of consecutive lost sequence numbers) with their times. Pure: no I/O,
// no clock; every time is CLOCK_MONOTONIC ns as the stream recorded it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vnetct/host_agent/errors.hpp"

namespace vnetct::host_agent {

// One echo as the receiver saw it: the packet's sequence number and when the
// echo arrived. Duplicates are separate arrivals.
struct EchoArrival {
    std::uint32_t seq = 0;
    std::int64_t arrival_ns = 0;
};

// A named stretch of the run ("before", "migrating", "after"), from its start
// to the next phase's start (the last one to the analysis' end).
struct StreamPhase {
    std::string name;
    std::int64_t start_ns = 0;
};

// A maximal run of consecutive lost sequence numbers.
struct LossWindow {
    std::uint32_t first_seq = 0;
    std::uint32_t last_seq = 0;
    std::uint64_t count = 0;
    std::int64_t start_ns = 0;  // sent time of the first lost packet
    // Sent time of the first packet echoed after the run, or of the last lost
    // packet when nothing follows the run.
    std::int64_t end_ns = 0;
    [[nodiscard]] std::int64_t duration_ns() const { return end_ns - start_ns; }
};

// The counts of one phase (or of the whole stream). A packet counts in the
// phase in which it was sent; so do its echoes.
struct PhaseReport {
    std::string name;
    std::int64_t start_ns = 0;
    std::int64_t end_ns = 0;
    std::uint64_t sent = 0;
    std::uint64_t received = 0;    // distinct sequence numbers echoed
    std::uint64_t lost = 0;        // sent, never echoed
    std::uint64_t duplicates = 0;  // echoes beyond the first of a sequence number
    // First echoes whose sequence number is below the highest already echoed
    // (a duplicate counts as a duplicate only).
    std::uint64_t reordered = 0;
    std::vector<LossWindow> loss_windows;  // the windows that start in this phase

    [[nodiscard]] std::int64_t duration_ns() const { return end_ns - start_ns; }
    // The window with the longest duration (on a tie, the most packets, then
    // the earliest); none when nothing was lost.
    [[nodiscard]] std::optional<LossWindow> longest_loss_window() const;
};

struct StreamReport {
    std::vector<PhaseReport> phases;
    PhaseReport overall;                        // named "overall", from the first phase (or earlier packet) to end_ns
    double rate_asked_pps = 0;                  // as given; 0 when not given
    double rate_achieved_pps = 0;               // (sent - 1) / (last sent - first sent); 0 below two packets
    std::optional<std::int64_t> rtt_median_ns;  // first echo - sent, over the echoed packets
    std::optional<std::int64_t> rtt_max_ns;
};

// `sent_ns[seq]` is the sent time of packet `seq` (non-decreasing);
// `arrivals` the echoes in arrival order; `phases` sorted by start_ns (may be
// empty: then only `overall`). Packets sent before the first phase count in
// the first; packets sent after `end_ns` (and their echoes) are left out.
// InvalidArgument, saying what is wrong, for: phases out of order, `end_ns`
// before the last phase's start, sent times going backwards, an arrival whose
// seq was never sent.
[[nodiscard]] HostResult<StreamReport> analyze_stream(const std::vector<std::int64_t>& sent_ns,
                                                      const std::vector<EchoArrival>& arrivals,
                                                      const std::vector<StreamPhase>& phases, std::int64_t end_ns,
                                                      double rate_asked_pps = 0);

}  // namespace vnetct::host_agent
