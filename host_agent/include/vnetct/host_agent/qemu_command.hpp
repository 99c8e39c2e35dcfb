// Builds a QEMU argv. Option values are escaped the way QEMU's option parser
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

class QemuCommand {
  public:
    explicit QemuCommand(std::string binary);

    // "-nodefaults"
    QemuCommand& flag(std::string name);
    // "-m" "512" (the value is passed as is: use option_list for property lists)
    QemuCommand& option(std::string name, std::string value);
    // "-device" "virtio-net-pci,netdev=hn0,..."; the first invalid key is kept
    // and reported by argv().
    QemuCommand& option(std::string name, std::string_view driver, const Properties& properties);

    // The full argv, or the first invalid property list met while building.
    [[nodiscard]] HostResult<std::vector<std::string>> argv() const;
    // One line a person can paste into a shell to reproduce the command.
    [[nodiscard]] std::string shell_line() const;

  private:
    std::vector<std::string> m_argv;
    std::string m_first_error;
};

// Quote one argument for a POSIX shell (only when needed).
[[nodiscard]] std::string shell_quote(std::string_view argument);

}  // namespace vnetct::host_agent
