// The per-VM transcript of a line-JSON conversation (qmp-<vm>.jsonl): one JSON
// object per line,
//   {"t_host_ns": <CLOCK_MONOTONIC ns>, "t_wall": "<ISO 8601 UTC, microseconds>",
//    "dir": "in"|"out"|"note", "msg": <message, or {"raw": "<text>"}>}
// flushed after every line so a crash loses nothing.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "vnetct/host_agent/errors.hpp"

namespace vnetct::host_agent {

// CLOCK_MONOTONIC in nanoseconds: the host time base of transcripts and events.
[[nodiscard]] std::int64_t monotonic_now_ns();

// CLOCK_REALTIME as "2024-05-01T12:34:56.123456Z".
[[nodiscard]] std::string wall_clock_iso8601();

// X(Name, "dir" field of a transcript line)
#define VNETCT_TRANSCRIPT_DIRECTIONS(X) \
    X(In, "in")                         \
    X(Out, "out")                       \
    X(Note, "note")
VNETCT_DEFINE_ENUM(TranscriptDirection, VNETCT_TRANSCRIPT_DIRECTIONS)

// A transcript stops growing here: a flooding peer must not fill the disk. The
// line that would pass it is replaced by one note saying so (Flooded, with the
// bound), and every later line is dropped and counted.
inline constexpr std::size_t max_transcript_bytes = std::size_t{64} * 1024 * 1024;

class Transcript {
  public:
    // A disabled transcript: every record is dropped.
    Transcript() = default;

    // Appends to `path`; an empty path gives a disabled transcript. At most
    // `max_bytes` of lines are written through this object, then one note.
    [[nodiscard]] static HostResult<Transcript> open(const std::string& path,
                                                     std::size_t max_bytes = max_transcript_bytes);

    [[nodiscard]] bool enabled() const { return m_file != nullptr; }
    [[nodiscard]] const std::string& path() const { return m_path; }
    // Lines dropped because the transcript reached its bound.
    [[nodiscard]] std::size_t dropped_lines() const { return m_dropped_lines; }

    // `host_ns` is when the message arrived or left; 0 means "now".
    void record(TranscriptDirection direction, const nlohmann::json& message, std::int64_t host_ns = 0);
    // Text that was not valid JSON, kept as {"raw": text}.
    void record_raw(TranscriptDirection direction, std::string_view text, std::int64_t host_ns = 0);
    // A remark of the harness itself, kept as {"note": text}.
    void note(std::string_view text);

  private:
    struct FileCloser {
        void operator()(std::FILE* file) const { std::fclose(file); }
    };

    void write_line(TranscriptDirection direction, const nlohmann::json& message, std::int64_t host_ns);

    std::unique_ptr<std::FILE, FileCloser> m_file;
    std::string m_path;
    std::size_t m_max_bytes = max_transcript_bytes;
    std::size_t m_written_bytes = 0;
    std::size_t m_dropped_lines = 0;
};

}  // namespace vnetct::host_agent
