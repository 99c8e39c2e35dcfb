// The framing of a line-delimited JSON stream (QMP, the vnetct guest agent):
// the bytes read so far are cut into lines, each parsed on its own. What the
// JsonLineChannel's reader thread runs on every read; a pure function, so the
// fuzzer (fuzz/json_lines_fuzz.cpp) runs exactly it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "vnetct/host_agent/errors.hpp"
#include "vnetct/host_agent/transcript.hpp"

namespace vnetct::host_agent {

// One line (or the end of the stream) taken off the socket by the reader.
struct Arrival {
    HostResult<nlohmann::json> message;
    std::int64_t arrival_ns = 0;
    std::string raw;        // the text as it goes to the transcript when it is no JSON
    std::size_t bytes = 0;  // the line's length, counted against the queue's byte bound
};

struct FramedLines {
    std::vector<Arrival> arrivals;   // in stream order
    std::optional<Error<HostErrc>> lost_framing;  // set when the last arrival is Oversized: read no further
    // With lost_framing: the oversized line is unfinished (its bytes so far were
    // dropped); a reader that resynchronises drops what follows up to the next
    // '\n'. Without it the oversized line was whole and the buffer holds what
    // came after it.
    bool in_oversized_line = false;
};

// Takes the complete lines out of `buffer` (bytes before `scanned` hold no
// line end; the rest stays for the next read). Blank lines are skipped; a line
// that is no JSON, or nests deeper than max_json_depth, is Malformed (with
// its text as raw); a line, or an unfinished one, over `max_message_size`
// bytes is Oversized and framing is lost (what came before and the oversized
// line leave the buffer; a reader that resynchronises calls again on the rest).
// `path` names the peer in errors.
[[nodiscard]] FramedLines take_lines(std::string& buffer, std::size_t scanned, std::size_t max_message_size,
                                     const std::string& path, std::int64_t arrival_ns);

// Writes what arrived to the transcript: messages as JSON, text that was no
// JSON as raw; errors without text (oversized, hung up between messages) leave
// no line.
template <typename Arrivals>
void record_arrivals(Transcript& transcript, const Arrivals& arrivals) {
    for (const Arrival& arrival : arrivals) {
        if (arrival.message) {
            transcript.record(TranscriptDirection::In, *arrival.message, arrival.arrival_ns);
        } else if (!arrival.raw.empty()) {
            transcript.record_raw(TranscriptDirection::In, arrival.raw, arrival.arrival_ns);
        }
    }
}

// Only spaces, tabs and carriage returns (or nothing).
[[nodiscard]] bool is_blank_text(std::string_view text);

// Peer text shortened to 200 characters (and its length) for error texts.
[[nodiscard]] std::string quote_text(std::string_view text);

}  // namespace vnetct::host_agent
