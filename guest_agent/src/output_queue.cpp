#include "vnetct/guest_agent/output_queue.hpp"

#include <nlohmann/json.hpp>

#include "vnetct/guest_agent/json_line.hpp"

namespace vnetct::guest_agent {

OutputQueue::OutputQueue(std::size_t capacity_bytes) : m_capacity_bytes(capacity_bytes) {}

void OutputQueue::push(std::string line) {
    if (m_offset > 0 && m_offset == m_pending.size()) {
        m_pending.clear();
        m_offset = 0;
    }
    const std::size_t queued = m_pending.size() - m_offset;
    if (m_dropped_lines > 0) {
        std::string notice =
            to_json_line(nlohmann::json{{"event", "output-dropped"}, {"lines", m_dropped_lines}});
        if (queued + notice.size() + line.size() > m_capacity_bytes) {
            ++m_dropped_lines;
            return;
        }
        m_pending += notice;
        m_dropped_lines = 0;
    } else if (queued + line.size() > m_capacity_bytes) {
        ++m_dropped_lines;
        return;
    }
    m_pending += line;
}

std::string_view OutputQueue::unsent() const { return std::string_view(m_pending).substr(m_offset); }

void OutputQueue::consume(std::size_t bytes) {
    m_offset += bytes;
    if (m_offset >= m_pending.size()) {
        m_pending.clear();
        m_offset = 0;
    } else if (m_offset > (1U << 20) && m_offset > m_pending.size() / 2) {
        m_pending.erase(0, m_offset);
        m_offset = 0;
    }
}

}  // namespace vnetct::guest_agent
