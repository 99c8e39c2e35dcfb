#include "vnetct/guest_agent/json_line.hpp"

namespace vnetct::guest_agent {

std::string to_json_line(const nlohmann::json& value) {
    std::string line = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    line += '\n';
    return line;
}

}  // namespace vnetct::guest_agent
