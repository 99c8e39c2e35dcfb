// The trace checker's words: host messages by key phrase, model outputs and
// violations as one-line text.
#include <algorithm>
#include <cctype>
#include <sstream>

#include "vnetct/reference_impl/trace_checker.hpp"

namespace vnetct::reference_impl {
namespace {

std::string lower(std::string_view text) {
    std::string lowered{text};
    std::transform(lowered.begin(), lowered.end(), lowered.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return lowered;
}

std::string entry_summary(const nlohmann::json& entry) {
    std::ostringstream text;
    text << (entry.is_object() ? entry.value("kind", std::string{"?"}) : "?");
    if (entry.is_object() && entry.contains("t_ms") && entry.at("t_ms").is_number()) {
        text << ", t=" << entry.at("t_ms").get<double>() << " ms";
    }
    return text.str();
}

}  // namespace

std::optional<std::string_view> host_message_phrase(std::string_view rule) {
    for (const WarningPhrase& entry : kWarningPhrases) {
        if (entry.rule == rule) {
            return entry.phrase;
        }
    }
    return std::nullopt;
}

bool host_message_matches(std::string_view text, std::string_view rule) {
    const auto phrase = host_message_phrase(rule);
    return phrase && lower(text).find(*phrase) != std::string::npos;
}

std::optional<std::string_view> rule_of_host_message(std::string_view text) {
    for (const WarningPhrase& entry : kWarningPhrases) {
        if (host_message_matches(text, entry.rule)) {
            return entry.rule;
        }
    }
    return std::nullopt;
}

std::string describe_output(const Output& output) {
    switch (output.kind) {
        case OutputKind::QmpEvent:
            return output.data.empty() ? output.name : output.name + " " + output.data.dump();
        case OutputKind::Warning:
            return "a warning on stderr like '" + output.text + "'";
        case OutputKind::StartError:
            return "the host refusing to start: '" + output.text + "'";
        case OutputKind::CommandError:
            return "device_add refused: '" + output.text + "'";
        case OutputKind::Plugged:
            return output.name + " visible in query-pci (plugged)";
        case OutputKind::Unplugged:
            return output.name + " absent from query-pci (unplugged)";
    }
    return output.name;
}

std::string Violation::message() const {
    std::string text = rule + " violated ";
    text += at_end_of_trace ? "by the end of the trace (expected since entry " : "at entry ";
    text += std::to_string(entry_index) + " (" + entry_summary(entry) + ")";
    text += at_end_of_trace ? ")" : "";
    text += ": observed " + observed + "; expected " + expected;
    if (!sentence.empty()) {
        text += " -- " + sentence;
    }
    return text;
}

}  // namespace vnetct::reference_impl
