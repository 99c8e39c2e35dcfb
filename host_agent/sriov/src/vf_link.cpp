#include "vnetct/sriov/vf_link.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <nlohmann/json.hpp>

#include "vnetct/host_agent/process.hpp"

namespace vnetct::sriov {
namespace {

constexpr auto kIpTimeout = std::chrono::seconds(20);

std::string describe(const std::vector<std::string>& argv) {
    std::string text;
    for (const auto& word : argv) {
        text += (text.empty() ? "" : " ") + word;
    }
    return text;
}

std::string trimmed(std::string text) {
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
        text.pop_back();
    }
    return text;
}

}  // namespace

std::optional<std::string> normalize_mac(const std::string& mac) {
    if (mac.size() != 17) {
        return std::nullopt;
    }
    std::string lower;
    for (std::size_t index = 0; index < mac.size(); ++index) {
        const char c = mac[index];
        if (index % 3 == 2) {
            if (c != ':') {
                return std::nullopt;
            }
        } else if (!std::isxdigit(static_cast<unsigned char>(c))) {
            return std::nullopt;
        }
        lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return lower;
}

SriovResult<std::vector<VfLinkState>> parse_vf_list(const std::string& ip_json, const std::string& pf) {
    const auto document = nlohmann::json::parse(ip_json, nullptr, false);
    if (document.is_discarded() || !document.is_array() || document.size() != 1 || !document[0].is_object()) {
        return fail(SriovErrc::CommandFailed, "ip -j link show dev " + pf + ": expected a JSON array of one link, got '" +
                                                  ip_json.substr(0, 200) + "'");
    }
    std::vector<VfLinkState> vfs;
    const auto& link = document[0];
    if (!link.contains("vfinfo_list")) {
        return vfs;
    }
    try {
        for (const auto& entry : link.at("vfinfo_list")) {
            VfLinkState state;
            state.vf = entry.at("vf").get<int>();
            state.mac = entry.value("address", entry.value("mac", std::string("00:00:00:00:00:00")));
            if (auto normal = normalize_mac(state.mac)) {
                state.mac = *normal;
            }
            if (entry.contains("vlan_list") && !entry["vlan_list"].empty()) {
                state.vlan = entry["vlan_list"][0].value("vlan", 0);
                state.qos = entry["vlan_list"][0].value("qos", 0);
            } else {
                state.vlan = entry.value("vlan", 0);
                state.qos = entry.value("qos", 0);
            }
            if (entry.contains("trust")) {
                state.trust = entry["trust"].get<bool>();
            }
            if (entry.contains("spoofchk")) {
                state.spoofchk = entry["spoofchk"].get<bool>();
            }
            vfs.push_back(std::move(state));
        }
    } catch (const nlohmann::json::exception& error) {
        return fail(SriovErrc::CommandFailed, "ip -j link show dev " + pf + ": unexpected vfinfo_list: " + error.what());
    }
    return vfs;
}

SriovResult<std::string> VfLink::ip(const std::vector<std::string>& arguments) const {
    std::vector<std::string> argv{"ip"};
    if (!m_netns.empty()) {
        argv.insert(argv.end(), {"-n", m_netns});
    }
    argv.insert(argv.end(), arguments.begin(), arguments.end());
    auto output = host_agent::run_command(argv, std::chrono::steady_clock::now() + kIpTimeout);
    if (!output) {
        return fail(SriovErrc::CommandFailed, describe(argv) + ": " + output.error().message());
    }
    if (output->status.code != 0 || output->status.signal != 0) {
        const std::string text = trimmed(output->output);
        if (text.find("Cannot find device") != std::string::npos || text.find("does not exist") != std::string::npos) {
            return fail(SriovErrc::NoSuchPf, describe(argv) + ": " + text);
        }
        if (text.find("Operation not supported") != std::string::npos) {
            return fail(SriovErrc::VfOpsUnsupported, describe(argv) + ": " + text);
        }
        return fail(SriovErrc::CommandFailed, describe(argv) + ": " + output->status.describe() + ": " + text);
    }
    return output->output;
}

SriovResult<std::vector<VfLinkState>> VfLink::read(const std::string& pf) const {
    auto output = ip({"-j", "-d", "link", "show", "dev", pf});
    if (!output) {
        return tl::unexpected(output.error());
    }
    return parse_vf_list(*output, pf);
}

SriovResult<VfLinkState> VfLink::read(const std::string& pf, int vf) const {
    auto vfs = read(pf);
    if (!vfs) {
        return tl::unexpected(vfs.error());
    }
    for (const auto& state : *vfs) {
        if (state.vf == vf) {
            return state;
        }
    }
    return fail(SriovErrc::NoSuchVf, pf + " reports " + std::to_string(vfs->size()) + " VFs through netlink, not VF " +
                                         std::to_string(vf));
}

SriovResult<void> VfLink::apply(const std::string& pf, int vf, const VfSettings& settings) const {
    if (vf < 0) {
        return fail(SriovErrc::InvalidArgument, "VF index " + std::to_string(vf));
    }
    const std::vector<std::string> base{"link", "set", "dev", pf, "vf", std::to_string(vf)};
    std::vector<std::vector<std::string>> steps;
    if (settings.mac) {
        auto mac = normalize_mac(*settings.mac);
        if (!mac) {
            return fail(SriovErrc::InvalidArgument, "VF MAC '" + *settings.mac + "'");
        }
        steps.push_back({"mac", *mac});
    }
    if (settings.vlan) {
        if (*settings.vlan < 0 || *settings.vlan > 4095 || settings.qos < 0 || settings.qos > 7) {
            return fail(SriovErrc::InvalidArgument, "VLAN " + std::to_string(*settings.vlan) + " qos " +
                                                        std::to_string(settings.qos) + " (0..4095, 0..7)");
        }
        steps.push_back({"vlan", std::to_string(*settings.vlan), "qos", std::to_string(settings.qos)});
    }
    if (settings.trust) {
        steps.push_back({"trust", *settings.trust ? "on" : "off"});
    }
    if (settings.spoofchk) {
        steps.push_back({"spoofchk", *settings.spoofchk ? "on" : "off"});
    }
    for (const auto& step : steps) {
        std::vector<std::string> arguments = base;
        arguments.insert(arguments.end(), step.begin(), step.end());
        if (auto done = ip(arguments); !done) {
            return tl::unexpected(done.error());
        }
    }
    return {};
}

}  // namespace vnetct::sriov
