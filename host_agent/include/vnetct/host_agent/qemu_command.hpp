// Pieces of a QEMU argv (the argv itself is built in Python, vnetct.vm.guest).
// Option values are escaped the way QEMU's option parser
// expects (a ',' inside a value is written ',,'), so a path or id with a comma
// can never split into a second property.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vnetct/host_agent/errors.hpp"

namespace vnetct::host_agent {

using Properties = std::vector<std::pair<std::string, std::string>>;

// ',' -> ',,'
[[nodiscard]] std::string escape_option_value(std::string_view value);

// "driver,key=value,key=value" with escaped values. Keys must be non-empty and
// hold neither ',' nor '='; the driver must not hold ','.
[[nodiscard]] HostResult<std::string> option_list(std::string_view driver, const Properties& properties);

// Quote one argument for a POSIX shell (only when needed).
[[nodiscard]] std::string shell_quote(std::string_view argument);

}  // namespace vnetct::host_agent
