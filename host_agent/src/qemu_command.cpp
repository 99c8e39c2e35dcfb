#include "vnetct/host_agent/qemu_command.hpp"

namespace vnetct::host_agent {

std::string escape_option_value(std::string_view value) {
    std::string escaped;
    escaped.reserve(value.size());
    for (char c : value) {
        escaped += c;
        if (c == ',') {
            escaped += ',';
        }
    }
    return escaped;
}

HostResult<std::string> option_list(std::string_view driver, const Properties& properties) {
    if (driver.find(',') != std::string_view::npos) {
        return fail(HostErrc::InvalidArgument, "driver name '" + std::string(driver) + "' holds a ','");
    }
    std::string text{driver};
    for (const auto& [key, value] : properties) {
        if (key.empty() || key.find_first_of(",=") != std::string::npos) {
            return fail(HostErrc::InvalidArgument,
                        "property name '" + key + "' of '" + std::string(driver) +
                            "' must be non-empty and hold neither ',' nor '='");
        }
        if (!text.empty()) {
            text += ',';
        }
        text += key;
        text += '=';
        text += escape_option_value(value);
    }
    return text;
}

std::string shell_quote(std::string_view argument) {
    const bool plain = !argument.empty() &&
                       argument.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                  "0123456789_-+./:=,@%") == std::string_view::npos;
    if (plain) {
        return std::string(argument);
    }
    std::string quoted = "'";
    for (char c : argument) {
        if (c == '\'') {
            quoted += "'\\''";
        } else {
            quoted += c;
        }
    }
    quoted += '\'';
    return quoted;
}

}  // namespace vnetct::host_agent
