#include "vnetct/guest_agent/line_buffer.hpp"

namespace vnetct::guest_agent {

LineBuffer::LineBuffer(std::size_t max_line_bytes) : m_max_line_bytes(max_line_bytes) {}

void LineBuffer::append(std::string_view bytes, std::vector<InputLine>& out) {
    while (!bytes.empty()) {
        const auto newline = bytes.find('\n');
        const std::string_view piece = bytes.substr(0, newline);
        if (m_discarding) {
            m_discarded_bytes += piece.size();
        } else if (m_partial.size() + piece.size() > m_max_line_bytes) {
            m_discarding = true;
            m_discarded_bytes = m_partial.size() + piece.size();
            m_partial.clear();
            m_partial.shrink_to_fit();
        } else {
            m_partial.append(piece);
        }
        if (newline == std::string_view::npos) {
            return;
        }
        bytes.remove_prefix(newline + 1);
        if (m_discarding) {
            out.push_back(InputLine{{}, true, m_discarded_bytes});
            m_discarding = false;
            m_discarded_bytes = 0;
            continue;
        }
        if (!m_partial.empty() && m_partial.back() == '\r') {
            m_partial.pop_back();
        }
        if (!m_partial.empty()) {
            out.push_back(InputLine{std::move(m_partial), false, 0});
        }
        m_partial.clear();
    }
}

void LineBuffer::clear() {
    m_partial.clear();
    m_discarding = false;
    m_discarded_bytes = 0;
}

}  // namespace vnetct::guest_agent
