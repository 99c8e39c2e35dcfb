// One JSON object per line. Interface names may hold any byte but '/', ':' and
// whitespace, so they can be invalid UTF-8: such bytes become U+FFFD instead of
// aborting the serialisation. Control characters and quotes are escaped.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace vnetct::guest_agent {

// Compact serialisation, terminated by '\n'.
[[nodiscard]] std::string to_json_line(const nlohmann::json& value);

}  // namespace vnetct::guest_agent
