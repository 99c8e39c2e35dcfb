// Where a hand-off's time goes: CLOCK_MONOTONIC stamps of its steps, taken by
// whichever side runs the step (both sides read the same clock). The backend
// reports them in its "committed" and "serving" lines ("stamps=name:ns,..."),
// the harness puts both sides' together and splits the blackout by them.
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
    // Stamps `step` (a literal) now; a repeated step keeps its first stamp.
    void mark(const char* step) { mark(step, monotonic_ns()); }
    void mark(const char* step, std::int64_t at_ns);
    [[nodiscard]] std::optional<std::int64_t> at(std::string_view step) const;
    // "name:ns,name:ns" in the order stamped ("-" for none).
    [[nodiscard]] std::string describe() const;

  private:
    std::vector<std::pair<const char*, std::int64_t>> m_marks;
};

// Stamps `step` on `stamps` if there are any to keep.
inline void mark(HandOffStamps* stamps, const char* step) {
    if (stamps != nullptr) {
        stamps->mark(step);
    }
}

}  // namespace vnetct::livetap
