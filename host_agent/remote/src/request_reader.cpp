#include "vnetct/remote/request_reader.hpp"

#include "vnetct/host_agent/line_framing.hpp"

namespace vnetct::remote {

void RequestReader::append(std::string_view bytes, std::vector<RemoteResult<nlohmann::json>>& out) {
    if (m_discarding) {
        const auto newline = bytes.find('\n');
        if (newline == std::string_view::npos) {
            return;
        }
        bytes.remove_prefix(newline + 1);
        m_discarding = false;
    }
    m_buffer.append(bytes);
    for (;;) {
        host_agent::FramedLines framed = host_agent::take_lines(m_buffer, m_scanned, m_max_line_bytes, "the harness", 0);
        for (host_agent::Arrival& arrival : framed.arrivals) {
            if (arrival.message) {
                out.emplace_back(std::move(*arrival.message));
            } else {
                const auto code = arrival.message.error().code == host_agent::HostErrc::Oversized ? RemoteErrc::Oversized
                                                                                                : RemoteErrc::Malformed;
                out.push_back(fail(code, arrival.message.error().detail));
            }
        }
        if (!framed.lost_framing) {
            m_scanned = m_buffer.size();  // no line end in what is left
            return;
        }
        m_scanned = 0;
        if (framed.in_oversized_line) {
            m_discarding = true;  // take_lines dropped the line's bytes so far
            return;
        }
        // the oversized line was whole: read on in what came after it
    }
}

void RequestReader::clear() {
    m_buffer.clear();
    m_scanned = 0;
    m_discarding = false;
}

}  // namespace vnetct::remote
