// The daemon's side of the stream's framing: the bytes from the harness cut
// into JSON lines by the host agent library's take_lines (the same framing,
// depth bound and errors as the harness's channels), but a daemon must not
// give up on a peer: after an oversized line it drops bytes up to the next
// line end and reads on. Every line that is no JSON or too long becomes an
// error naming what was wrong.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "vnetct/remote/errors.hpp"

namespace vnetct::remote {

class RequestReader {
  public:
    explicit RequestReader(std::size_t max_line_bytes) : m_max_line_bytes(max_line_bytes) {}

    // Appends `bytes`; each complete line becomes a message or an error
    // (Malformed: not JSON or nested too deep; Oversized: over the limit,
    // reported once per line, when the limit is passed).
    void append(std::string_view bytes, std::vector<RemoteResult<nlohmann::json>>& out);
    // Forgets a partial line (the peer went away).
    void clear();
    // Bytes held for an unfinished line.
    [[nodiscard]] std::size_t buffered() const { return m_buffer.size(); }

  private:
    std::size_t m_max_line_bytes;
    std::string m_buffer;
    std::size_t m_scanned = 0;
    bool m_discarding = false;  // inside an oversized line: drop up to its '\n'
};

}  // namespace vnetct::remote
