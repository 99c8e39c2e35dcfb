// The line-JSON framing both QMP and the guest agent speak, as a hostile peer
// drives it: the bytes arrive in reads of any size (take_lines, what the
// channel's reader thread runs), each message is classified as the clients
// read it (classify_message), written to a transcript, and passed through the
// QMP interposer's session (as QEMU's line and as a client's).
// Invariants: framing does not depend on how the bytes were cut into reads;
// no line end stays in the buffer; every accepted message is a JSON value
// nested at most max_json_depth deep; nothing is kept past the size bound.
//
// Input: byte 0 picks the read size (1..64), byte 1 the message size limit
// (64..16383 bytes); the rest is the stream.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "qmp_interposer_session.hpp"
#include "vnetct/host_agent/json_line_channel.hpp"
#include "vnetct/host_agent/line_framing.hpp"
#include "vnetct/host_agent/qmp_fault_plan.hpp"
#include "vnetct/host_agent/transcript.hpp"

using namespace vnetct::host_agent;

namespace {

const std::string peer = "fuzz.sock";

// What an arrival is, comparable across two framings of the same bytes.
std::string outline(const Arrival& arrival) {
    if (!arrival.message) {
        // An unfinished line over the limit may be seen before its end in
        // small reads and as a whole line in one read: both are Oversized.
        return "error " + std::string(to_string(arrival.message.error().code));
    }
    return arrival.message->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// The framing of the whole stream in reads of `read_size` bytes.
std::vector<std::string> frame(std::string_view stream, std::size_t read_size, std::size_t limit,
                               std::vector<Arrival>* kept) {
    std::vector<std::string> outlines;
    std::string buffer;
    for (std::size_t at = 0; at < stream.size(); at += read_size) {
        const std::size_t scanned = buffer.size();
        buffer.append(stream.substr(at, read_size));
        FramedLines framed = take_lines(buffer, scanned, limit, peer, 0);
        for (Arrival& arrival : framed.arrivals) {
            VNETCT_FUZZ_CHECK(arrival.bytes <= limit);
            outlines.push_back(outline(arrival));
            if (kept != nullptr) {
                kept->push_back(std::move(arrival));
            }
        }
        if (framed.lost_framing) {
            VNETCT_FUZZ_CHECK(!framed.arrivals.empty() && !framed.arrivals.back().message &&
                              framed.arrivals.back().message.error().code == HostErrc::Oversized);
            outlines.push_back("lost framing");
            return outlines;
        }
        VNETCT_FUZZ_CHECK(buffer.find('\n') == std::string::npos);
        VNETCT_FUZZ_CHECK(buffer.size() <= limit);
    }
    return outlines;
}

FaultPlan interposer_plan() {
    const auto plan = parse_fault_plan(nlohmann::json::parse(R"({"rules": [
        {"name": "drop-resume", "event": "RESUME", "action": "drop", "count": 2},
        {"name": "late-unplug", "event": "UNPLUG_PRIMARY", "action": "delay", "ms": 5},
        {"name": "status", "command": "query-status", "action": "edit-reply", "set": {"running": false}},
        {"name": "answer", "command": "migrate", "action": "reply", "return": {},
         "forge": [{"event": "MIGRATION", "data": {"status": "setup"}}]}]})"));
    VNETCT_FUZZ_CHECK(plan.has_value());
    return *plan;
}

void through_interposer(const std::vector<std::string>& lines) {
    static const FaultPlan plan = interposer_plan();
    std::vector<FaultRuleState> states(plan.rules.size());
    InterposerSession session(plan, states, [](const std::string&, std::string_view, const nlohmann::json&,
                                               nlohmann::json) {});
    for (std::size_t i = 0; i < lines.size(); ++i) {
        if (i % 2 == 0) {
            session.from_upstream(lines[i]);
        } else {
            session.from_client(lines[i]);
        }
        (void)session.take_to_client();
        (void)session.take_to_upstream();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    vnetct::fuzz::maybe_seeded_bug(std::span<const std::uint8_t>(data, size));
    if (size < 2) {
        return 0;
    }
    const std::size_t read_size = 1 + data[0] % 64;
    const std::size_t limit = 64 + (std::size_t{data[1]} << 6);
    const std::string_view stream(reinterpret_cast<const char*>(data) + 2, size - 2);

    std::vector<Arrival> arrivals;
    const auto in_reads = frame(stream, read_size, limit, &arrivals);
    const auto at_once = frame(stream, stream.size() + 1, limit, nullptr);
    VNETCT_FUZZ_CHECK(in_reads == at_once);

    static Transcript transcript = [] {
        auto opened = Transcript::open("/dev/null", 1 << 20);
        VNETCT_FUZZ_CHECK(opened.has_value());
        return std::move(*opened);
    }();
    record_arrivals(transcript, arrivals);

    std::vector<std::string> lines;
    for (Arrival& arrival : arrivals) {
        if (!arrival.message) {
            const HostErrc code = arrival.message.error().code;
            VNETCT_FUZZ_CHECK(code == HostErrc::Malformed || code == HostErrc::Oversized);
            continue;
        }
        const std::string text = arrival.message->dump();
        VNETCT_FUZZ_CHECK(!nests_deeper_than(text, max_json_depth));
        lines.push_back(text + "\n");
        if (auto received = classify_message(std::move(*arrival.message))) {
            VNETCT_FUZZ_CHECK(received->message.is_object());
            VNETCT_FUZZ_CHECK(!received->event || received->message["event"].is_string());
        } else {
            VNETCT_FUZZ_CHECK(received.error().code == HostErrc::Protocol);
        }
    }
    through_interposer(lines);
    return 0;
}
