#include "vnetct/host_agent/line_framing.hpp"

#include "vnetct/host_agent/json_line_channel.hpp"

namespace vnetct::host_agent {

namespace {

constexpr std::size_t quoted_text_limit = 200;

Error<HostErrc> lost_framing(const std::string& path) {
    return Error<HostErrc>{HostErrc::Oversized,
                           "the channel to " + path + " lost its framing after an oversized message"};
}

}  // namespace

bool is_blank_text(std::string_view text) { return text.find_first_not_of(" \t\r") == std::string_view::npos; }

std::string quote_text(std::string_view text) {
    if (text.size() <= quoted_text_limit) {
        return std::string(text);
    }
    return std::string(text.substr(0, quoted_text_limit)) + "... (" + std::to_string(text.size()) + " bytes)";
}

FramedLines take_lines(std::string& buffer, std::size_t scanned, std::size_t max_message_size,
                       const std::string& path, std::int64_t arrival_ns) {
    FramedLines framed;
    std::vector<Arrival>& arrivals = framed.arrivals;
    std::size_t line_start = 0;
    std::size_t newline = 0;
    while ((newline = buffer.find('\n', scanned)) != std::string::npos) {
        const std::string_view line(buffer.data() + line_start, newline - line_start);
        line_start = scanned = newline + 1;
        if (line.size() > max_message_size) {
            arrivals.push_back(Arrival{fail(HostErrc::Oversized, "a line of " + std::to_string(line.size()) +
                                                                     " bytes (limit " +
                                                                     std::to_string(max_message_size) + ") from " +
                                                                     path + ": " + quote_text(line)),
                                       arrival_ns,
                                       {}});
            framed.lost_framing = lost_framing(path);
            buffer.erase(0, line_start);
            return framed;
        }
        if (is_blank_text(line)) {
            continue;
        }
        if (nests_deeper_than(line, max_json_depth)) {
            arrivals.push_back(Arrival{fail(HostErrc::Malformed, "nested deeper than " +
                                                                     std::to_string(max_json_depth) +
                                                                     " levels, from " + path + ": " + quote_text(line)),
                                       arrival_ns, std::string(line), line.size()});
            continue;
        }
        nlohmann::json message = nlohmann::json::parse(line, nullptr, false);
        if (message.is_discarded()) {
            arrivals.push_back(Arrival{fail(HostErrc::Malformed, "from " + path + ": " + quote_text(line)), arrival_ns,
                                       std::string(line), line.size()});
        } else {
            arrivals.push_back(Arrival{std::move(message), arrival_ns, {}, line.size()});
        }
    }
    buffer.erase(0, line_start);
    if (buffer.size() > max_message_size) {
        arrivals.push_back(Arrival{fail(HostErrc::Oversized, "more than " + std::to_string(max_message_size) +
                                                                 " bytes without a line end from " + path + ": " +
                                                                 quote_text(buffer)),
                                   arrival_ns,
                                   {}});
        buffer.clear();
        framed.lost_framing = lost_framing(path);
        framed.in_oversized_line = true;
    }
    return framed;
}

}  // namespace vnetct::host_agent
