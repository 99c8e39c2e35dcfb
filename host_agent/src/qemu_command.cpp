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

QemuCommand::QemuCommand(std::string binary) { m_argv.push_back(std::move(binary)); }

QemuCommand& QemuCommand::flag(std::string name) {
    m_argv.push_back(std::move(name));
    return *this;
}

QemuCommand& QemuCommand::option(std::string name, std::string value) {
    m_argv.push_back(std::move(name));
    m_argv.push_back(std::move(value));
    return *this;
}

QemuCommand& QemuCommand::option(std::string name, std::string_view driver, const Properties& properties) {
    auto list = option_list(driver, properties);
    if (!list) {
        if (m_first_error.empty()) {
            m_first_error = name + ": " + list.error().detail;
        }
        return *this;
    }
    return option(std::move(name), std::move(*list));
}

HostResult<std::vector<std::string>> QemuCommand::argv() const {
    if (!m_first_error.empty()) {
        return fail(HostErrc::InvalidArgument, m_first_error);
    }
    return m_argv;
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

std::string QemuCommand::shell_line() const {
    std::string line;
    for (const auto& argument : m_argv) {
        if (!line.empty()) {
            line += ' ';
        }
        line += shell_quote(argument);
    }
    return line;
}

}  // namespace vnetct::host_agent
