// Where a hand-off's time goes: CLOCK_MONOTONIC stamps of its steps, taken by
// whichever side runs the step (both sides read the same clock). The backend
// reports them in its "committed" and "serving" lines ("stamps=name:ns,..."),
// the harness puts both sides' together and splits the blackout by them.
//
// The steps, source: command, target_ready (Ready received), stopped,
// offer_sent, accept_received, commit_sent; target: accepted (the
// connection), nic_spawned (its reader thread), offer_received, queues_read,
// distinct_checked, identity_checked (the validation), accept_sent,
// commit_received, reader_polling (the first poll of the queues: serving).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vnetct::livetap {

// CLOCK_MONOTONIC in ns (the clock of every time the backend reports).
[[nodiscard]] std::int64_t monotonic_ns();

class HandOffStamps {
  public:
    HandOffStamps() { m_marks.reserve(16); }
    // Stamps `step` now; a repeated step keeps its first stamp.
    void mark(std::string_view step) { mark(step, monotonic_ns()); }
    void mark(std::string_view step, std::int64_t at_ns);
    [[nodiscard]] std::optional<std::int64_t> at(std::string_view step) const;
    // "name:ns,name:ns" in the order stamped ("-" for none).
    [[nodiscard]] std::string describe() const;
    // The stamps of a describe() text; none if it is not one.
    [[nodiscard]] static std::optional<HandOffStamps> parse(std::string_view text);

  private:
    std::vector<std::pair<std::string, std::int64_t>> m_marks;
};

// Stamps `step` on `stamps` if there are any to keep.
inline void mark(HandOffStamps* stamps, std::string_view step) {
    if (stamps != nullptr) {
        stamps->mark(step);
    }
}

// The blackout's accounting, judged from both sides' stamps of one hand-off
// (stopped: the source's, serving: the target's first read): what must stay
// out of the window (the target's wake-up for the connection and the source's
// wait for its Ready, the creation of the target's reader thread), what must
// be in it in the protocol's order (Offer, validation, Accept, Commit), and
// that it ends at the reader's first poll. One sentence per problem, naming
// the step; none for a hand-off as channel.hpp describes it.
[[nodiscard]] std::vector<std::string> blackout_accounting_problems(const HandOffStamps& source,
                                                                    const HandOffStamps& target,
                                                                    std::int64_t stopped_ns,
                                                                    std::int64_t serving_ns);

}  // namespace vnetct::livetap
