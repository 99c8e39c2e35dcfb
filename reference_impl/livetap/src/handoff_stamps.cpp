#include "vnetct/livetap/handoff_stamps.hpp"

#include <time.h>

namespace vnetct::livetap {

std::int64_t monotonic_ns() {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    return static_cast<std::int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
}

void HandOffStamps::mark(const char* step, std::int64_t at_ns) {
    if (!at(step)) {
        m_marks.emplace_back(step, at_ns);
    }
}

std::optional<std::int64_t> HandOffStamps::at(std::string_view step) const {
    for (const auto& [name, ns] : m_marks) {
        if (step == name) {
            return ns;
        }
    }
    return std::nullopt;
}

std::string HandOffStamps::describe() const {
    std::string text;
    for (const auto& [name, ns] : m_marks) {
        text += (text.empty() ? "" : ",") + std::string(name) + ":" + std::to_string(ns);
    }
    return text.empty() ? "-" : text;
}

}  // namespace vnetct::livetap
