#include "vnetct/host_agent/stream_analysis.hpp"

#include <algorithm>
#include <limits>
#include <tuple>

namespace vnetct::host_agent {
namespace {

HostResult<void> validate(const std::vector<std::int64_t>& sent_ns, const std::vector<EchoArrival>& arrivals,
                          const std::vector<StreamPhase>& phases, std::int64_t end_ns) {
    for (std::size_t i = 1; i < phases.size(); ++i) {
        if (phases[i].start_ns < phases[i - 1].start_ns) {
            return fail(HostErrc::InvalidArgument, "phases are not sorted by start time: phase #" + std::to_string(i) +
                                                       " '" + phases[i].name + "' starts at " +
                                                       std::to_string(phases[i].start_ns) + " ns, before phase #" +
                                                       std::to_string(i - 1) + " '" + phases[i - 1].name + "' at " +
                                                       std::to_string(phases[i - 1].start_ns) + " ns");
        }
    }
    if (!phases.empty() && end_ns < phases.back().start_ns) {
        return fail(HostErrc::InvalidArgument, "end_ns " + std::to_string(end_ns) + " is before the last phase '" +
                                                   phases.back().name + "' starts (" +
                                                   std::to_string(phases.back().start_ns) + " ns)");
    }
    if (sent_ns.size() > std::size_t{std::numeric_limits<std::uint32_t>::max()} + 1) {
        return fail(HostErrc::InvalidArgument,
                    std::to_string(sent_ns.size()) + " sent times: sequence numbers are 32 bits");
    }
    for (std::size_t seq = 1; seq < sent_ns.size(); ++seq) {
        if (sent_ns[seq] < sent_ns[seq - 1]) {
            return fail(HostErrc::InvalidArgument, "sent times go backwards: seq " + std::to_string(seq) + " sent at " +
                                                       std::to_string(sent_ns[seq]) + " ns, seq " +
                                                       std::to_string(seq - 1) + " at " +
                                                       std::to_string(sent_ns[seq - 1]) + " ns");
        }
    }
    for (std::size_t i = 0; i < arrivals.size(); ++i) {
        if (arrivals[i].seq >= sent_ns.size()) {
            return fail(HostErrc::InvalidArgument, "arrival #" + std::to_string(i) + " has seq " +
                                                       std::to_string(arrivals[i].seq) + " but only " +
                                                       std::to_string(sent_ns.size()) + " packets were sent");
        }
    }
    return {};
}

// The phase a packet sent at `sent_ns` belongs to: the last one started by
// then, the first for packets before it. `phases` is not empty.
std::size_t phase_of(const std::vector<StreamPhase>& phases, std::int64_t sent_ns) {
    const auto after = std::upper_bound(phases.begin(), phases.end(), sent_ns,
                                        [](std::int64_t at, const StreamPhase& phase) { return at < phase.start_ns; });
    return after == phases.begin() ? 0 : static_cast<std::size_t>(after - phases.begin()) - 1;
}

std::int64_t median(std::vector<std::int64_t> values) {
    const std::size_t middle = values.size() / 2;
    std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(middle), values.end());
    const std::int64_t upper = values[middle];
    if (values.size() % 2 == 1) {
        return upper;
    }
    const std::int64_t lower = *std::max_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(middle));
    return lower + (upper - lower) / 2;
}

}  // namespace

std::optional<LossWindow> PhaseReport::longest_loss_window() const {
    std::optional<LossWindow> longest;
    for (const LossWindow& window : loss_windows) {
        if (!longest || std::make_tuple(window.duration_ns(), window.count) >
                            std::make_tuple(longest->duration_ns(), longest->count)) {
            longest = window;
        }
    }
    return longest;
}

HostResult<StreamReport> analyze_stream(const std::vector<std::int64_t>& sent_ns,
                                        const std::vector<EchoArrival>& arrivals,
                                        const std::vector<StreamPhase>& phases, std::int64_t end_ns,
                                        double rate_asked_pps) {
    if (auto valid = validate(sent_ns, arrivals, phases, end_ns); !valid) {
        return tl::unexpected(valid.error());
    }
    // Sent times are sorted: the packets in the analysis are seqs [0, included).
    const std::size_t included =
        static_cast<std::size_t>(std::upper_bound(sent_ns.begin(), sent_ns.end(), end_ns) - sent_ns.begin());

    StreamReport report;
    report.rate_asked_pps = rate_asked_pps;
    for (std::size_t i = 0; i < phases.size(); ++i) {
        PhaseReport phase;
        phase.name = phases[i].name;
        phase.start_ns = phases[i].start_ns;
        phase.end_ns = i + 1 < phases.size() ? phases[i + 1].start_ns : end_ns;
        report.phases.push_back(std::move(phase));
    }
    PhaseReport& overall = report.overall;
    overall.name = "overall";
    overall.start_ns = phases.empty() ? end_ns : phases.front().start_ns;
    if (included > 0) {
        overall.start_ns = std::min(overall.start_ns, sent_ns.front());
    }
    overall.end_ns = end_ns;

    // Counts in the phase of the packet and overall.
    auto count = [&](std::uint32_t seq, std::uint64_t PhaseReport::*field) {
        if (!report.phases.empty()) {
            ++(report.phases[phase_of(phases, sent_ns[seq])].*field);
        }
        ++(overall.*field);
    };

    // Echoes, in arrival order.
    std::vector<bool> echoed(included, false);
    std::vector<std::int64_t> rtts;
    std::int64_t highest = -1;
    for (const EchoArrival& arrival : arrivals) {
        if (arrival.seq >= included) {
            continue;  // sent after end_ns
        }
        if (echoed[arrival.seq]) {
            count(arrival.seq, &PhaseReport::duplicates);
            continue;
        }
        echoed[arrival.seq] = true;
        count(arrival.seq, &PhaseReport::received);
        rtts.push_back(arrival.arrival_ns - sent_ns[arrival.seq]);
        if (static_cast<std::int64_t>(arrival.seq) < highest) {
            count(arrival.seq, &PhaseReport::reordered);
        }
        highest = std::max<std::int64_t>(highest, arrival.seq);
    }

    // Packets, in sequence order: sent, lost, loss windows.
    std::optional<LossWindow> open;
    auto close_window = [&](std::int64_t window_end_ns) {
        open->end_ns = window_end_ns;
        if (!report.phases.empty()) {
            report.phases[phase_of(phases, open->start_ns)].loss_windows.push_back(*open);
        }
        overall.loss_windows.push_back(*open);
        open.reset();
    };
    for (std::size_t index = 0; index < included; ++index) {
        const auto seq = static_cast<std::uint32_t>(index);
        count(seq, &PhaseReport::sent);
        if (echoed[index]) {
            if (open) {
                close_window(sent_ns[index]);
            }
            continue;
        }
        count(seq, &PhaseReport::lost);
        if (!open) {
            open = LossWindow{seq, seq, 0, sent_ns[index], 0};
        }
        open->last_seq = seq;
        ++open->count;
    }
    if (open) {
        close_window(sent_ns[open->last_seq]);
    }

    if (included >= 2 && sent_ns[included - 1] > sent_ns.front()) {
        report.rate_achieved_pps =
            static_cast<double>(included - 1) * 1e9 / static_cast<double>(sent_ns[included - 1] - sent_ns.front());
    }
    if (!rtts.empty()) {
        report.rtt_max_ns = *std::max_element(rtts.begin(), rtts.end());
        report.rtt_median_ns = median(std::move(rtts));
    }
    return report;
}

}  // namespace vnetct::host_agent
