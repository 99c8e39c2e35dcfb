#include "vnetct/host_agent/transcript.hpp"

#include <cerrno>
#include <cstring>
#include <ctime>

namespace vnetct::host_agent {

std::int64_t monotonic_now_ns() {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    return static_cast<std::int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

std::string wall_clock_iso8601() {
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    std::tm utc{};
    gmtime_r(&now.tv_sec, &utc);
    char seconds[32];
    std::strftime(seconds, sizeof seconds, "%Y-%m-%dT%H:%M:%S", &utc);
    char text[64];
    std::snprintf(text, sizeof text, "%s.%06ldZ", seconds, static_cast<long>(now.tv_nsec / 1000));
    return text;
}

HostResult<Transcript> Transcript::open(const std::string& path, std::size_t max_bytes) {
    Transcript transcript;
    transcript.m_max_bytes = max_bytes;
    if (path.empty()) {
        return transcript;
    }
    std::FILE* file = std::fopen(path.c_str(), "ae");
    if (file == nullptr) {
        return fail(HostErrc::Io, "opening transcript " + path + ": " + std::strerror(errno));
    }
    transcript.m_file.reset(file);
    transcript.m_path = path;
    return transcript;
}

void Transcript::record(TranscriptDirection direction, const nlohmann::json& message, std::int64_t host_ns) {
    write_line(direction, message, host_ns);
}

void Transcript::record_raw(TranscriptDirection direction, std::string_view text, std::int64_t host_ns) {
    write_line(direction, nlohmann::json{{"raw", std::string(text)}}, host_ns);
}

void Transcript::note(std::string_view text) {
    write_line(TranscriptDirection::Note, nlohmann::json{{"note", std::string(text)}}, 0);
}

void Transcript::write_line(TranscriptDirection direction, const nlohmann::json& message, std::int64_t host_ns) {
    if (!enabled()) {
        return;
    }
    if (m_dropped_lines > 0) {  // past the bound: not even serialized
        ++m_dropped_lines;
        return;
    }
    const nlohmann::json line{
        {"t_host_ns", host_ns != 0 ? host_ns : monotonic_now_ns()},
        {"t_wall", wall_clock_iso8601()},
        {"dir", to_string(direction)},
        {"msg", message},
    };
    // Peer text may hold invalid UTF-8: replace it rather than lose the line.
    std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    text += '\n';
    if (m_written_bytes + text.size() > m_max_bytes) {
        ++m_dropped_lines;
        const nlohmann::json flooded{
            {"t_host_ns", monotonic_now_ns()},
            {"t_wall", wall_clock_iso8601()},
            {"dir", to_string(TranscriptDirection::Note)},
            {"msg",
             {{"note", "Flooded: the transcript reached its bound of " + std::to_string(m_max_bytes) +
                           " bytes; this line (" + std::to_string(text.size()) + " bytes) and every later one are dropped"}}},
        };
        text = flooded.dump() + '\n';
    }
    m_written_bytes += text.size();
    std::fwrite(text.data(), 1, text.size(), m_file.get());
    std::fflush(m_file.get());
}

}  // namespace vnetct::host_agent
