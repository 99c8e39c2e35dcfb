// The failover trace checker's reader (parse_failover_trace) and its replay:
// a trace is JSON written by the harness from what a QEMU did, or handed in
// by a user. Schema errors are TraceErrors naming the field; an accepted
// trace replays against the model to a verdict whose violation names a rule.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include <nlohmann/json.hpp>

#include "fuzz_support.hpp"
#include "vnetct/host_agent/json_line_channel.hpp"
#include "vnetct/reference_impl/rules.hpp"
#include "vnetct/reference_impl/trace_checker.hpp"

using namespace vnetct::reference_impl;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    vnetct::fuzz::maybe_seeded_bug(std::span<const std::uint8_t>(data, size));
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    // The same depth bound as every JSON the harness reads (issue 17 part 1).
    if (vnetct::host_agent::nests_deeper_than(text, vnetct::host_agent::max_json_depth)) {
        return 0;
    }
    const nlohmann::json trace = nlohmann::json::parse(text, nullptr, false);
    if (trace.is_discarded()) {
        return 0;
    }
    auto parsed = parse_failover_trace(trace);
    auto verdict = check_failover_trace(trace);
    VNETCT_FUZZ_CHECK(parsed.has_value() || !verdict.has_value());
    if (!parsed) {
        VNETCT_FUZZ_CHECK(!parsed.error().message().empty());
        return 0;
    }
    auto replayed = check_failover_trace(*parsed);
    VNETCT_FUZZ_CHECK(replayed.has_value() == verdict.has_value());
    if (!verdict) {
        return 0;
    }
    VNETCT_FUZZ_CHECK(verdict->conformant == !verdict->violation.has_value());
    if (verdict->violation) {
        VNETCT_FUZZ_CHECK(find_rule(verdict->violation->rule).has_value());
        VNETCT_FUZZ_CHECK(!verdict->violation->message().empty());
        VNETCT_FUZZ_CHECK(replayed->violation && replayed->violation->rule == verdict->violation->rule);
    }
    return 0;
}
