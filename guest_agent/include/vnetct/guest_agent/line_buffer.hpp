// Splits the byte stream from the host into lines; a line longer than the
// limit is discarded as it streams in and reported once its '\n' arrives.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace vnetct::guest_agent {

struct InputLine {
    std::string text;            // without '\n' (and a trailing '\r')
    bool oversized = false;      // text is empty; discarded_bytes says how much
    std::size_t discarded_bytes = 0;
};

class LineBuffer {
public:
    explicit LineBuffer(std::size_t max_line_bytes);

    // Appends received bytes; complete lines go to `out`. Empty lines are skipped.
    void append(std::string_view bytes, std::vector<InputLine>& out);
    // Drops a partial line (the host went away).
    void clear();

private:
    std::size_t m_max_line_bytes;
    std::string m_partial;
    bool m_discarding = false;
    std::size_t m_discarded_bytes = 0;
};

}  // namespace vnetct::guest_agent
