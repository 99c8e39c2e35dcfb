#include "vnetct/livetap/handoff_stamps.hpp"

#include <time.h>

#include <charconv>
#include <cmath>

namespace vnetct::livetap {

std::int64_t monotonic_ns() {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    return static_cast<std::int64_t>(now.tv_sec) * 1000000000 + now.tv_nsec;
}

void HandOffStamps::mark(std::string_view step, std::int64_t at_ns) {
    if (!at(step)) {
        m_marks.emplace_back(std::string(step), at_ns);
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
        text += (text.empty() ? "" : ",") + name + ":" + std::to_string(ns);
    }
    return text.empty() ? "-" : text;
}

std::optional<HandOffStamps> HandOffStamps::parse(std::string_view text) {
    HandOffStamps stamps;
    if (text == "-") {
        return stamps;
    }
    for (;;) {
        const auto comma = text.find(',');
        const std::string_view entry = text.substr(0, comma);
        const auto colon = entry.find(':');
        if (colon == 0 || colon == std::string_view::npos) {
            return std::nullopt;
        }
        std::int64_t ns = 0;
        const auto digits = entry.substr(colon + 1);
        const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), ns);
        if (digits.empty() || error != std::errc() || end != digits.data() + digits.size()) {
            return std::nullopt;
        }
        stamps.mark(entry.substr(0, colon), ns);
        if (comma == std::string_view::npos) {
            return stamps;
        }
        text = text.substr(comma + 1);
    }
}

namespace {

std::string microseconds(std::int64_t ns) { return std::to_string(std::llround(static_cast<double>(ns) / 1e3)) + " us"; }

}  // namespace

std::vector<std::string> blackout_accounting_problems(const HandOffStamps& source, const HandOffStamps& target,
                                                      std::int64_t stopped_ns, std::int64_t serving_ns) {
    std::vector<std::string> problems;
    // Before the stop: each would put a wake-up or a thread's creation in the window.
    const std::pair<const HandOffStamps*, const char*> before_stop[] = {
        {&source, "target_ready"}, {&target, "accepted"}, {&target, "nic_spawned"}};
    for (const auto& [side, step] : before_stop) {
        const auto at = side->at(step);
        if (!at) {
            problems.push_back(std::string(step) + " was not stamped");
        } else if (*at > stopped_ns) {
            problems.push_back(std::string(step) + " came " + microseconds(*at - stopped_ns) +
                               " into the blackout; it belongs before the source stops reading");
        }
    }
    // Inside, in the protocol's order: one message each way, then the Commit.
    const std::pair<const HandOffStamps*, const char*> inside[] = {
        {&source, "offer_sent"},       {&target, "offer_received"},  {&target, "identity_checked"},
        {&source, "accept_received"},  {&target, "commit_received"}, {&target, "reader_polling"}};
    std::int64_t previous_ns = stopped_ns;
    const char* previous = "stopped";
    for (const auto& [side, step] : inside) {
        const auto at = side->at(step);
        if (!at) {
            problems.push_back(std::string(step) + " was not stamped");
            continue;
        }
        if (*at < previous_ns) {
            problems.push_back(std::string(step) + " came " + microseconds(previous_ns - *at) + " before " +
                               previous + ": the blackout's steps are out of the protocol's order");
        }
        previous_ns = *at;
        previous = step;
    }
    if (const auto polling = target.at("reader_polling"); polling && *polling != serving_ns) {
        problems.push_back("serving_ns is " + microseconds(serving_ns - *polling) +
                           " off the reader's first poll: the blackout must end when the target can read");
    }
    return problems;
}

}  // namespace vnetct::livetap
