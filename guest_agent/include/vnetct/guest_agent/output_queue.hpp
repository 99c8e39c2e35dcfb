// Outgoing lines waiting for the host. Bounded: when the host is away for a
// long time, new lines are dropped and counted, and an `output-dropped` event
// is queued as soon as there is room again.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace vnetct::guest_agent {

class OutputQueue {
public:
    explicit OutputQueue(std::size_t capacity_bytes);

    void push(std::string line);
    [[nodiscard]] bool empty() const { return m_pending.size() == m_offset; }
    [[nodiscard]] std::string_view unsent() const;
    void consume(std::size_t bytes);
    [[nodiscard]] std::size_t dropped_lines() const { return m_dropped_lines; }

private:
    std::size_t m_capacity_bytes;
    std::string m_pending;
    std::size_t m_offset = 0;
    std::size_t m_dropped_lines = 0;
};

}  // namespace vnetct::guest_agent
