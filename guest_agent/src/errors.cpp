#include "vnetct/guest_agent/errors.hpp"

#include <cstring>

namespace vnetct::guest_agent {

std::string describe_errno(std::string_view what, int errno_value) {
    std::string text{what};
    text += ": ";
    text += std::strerror(errno_value);
    return text;
}

}  // namespace vnetct::guest_agent
