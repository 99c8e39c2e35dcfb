#include "vnetct/sriov/journal.hpp"

#include "vnetct/common/atomic_file.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>

#include "vnetct/host_agent/json_line_channel.hpp"

namespace vnetct::sriov {
namespace fs = std::filesystem;
namespace {

SriovResult<std::string> undo_entry(const nlohmann::json& entry, Sysfs& sysfs, const VfLink& link) {
    const std::string op = entry.at("op").get<std::string>();
    if (op == "num_vfs") {
        const auto pf = entry.at("pf").get<std::string>();
        const int previous = entry.at("previous").get<int>();
        if (auto done = sysfs.set_num_vfs(pf, previous); !done) {
            return tl::unexpected(done.error());
        }
        return pf + ": sriov_numvfs " + std::to_string(previous);
    }
    if (op == "vf_link") {
        const auto pf = entry.at("pf").get<std::string>();
        const int vf = entry.at("vf").get<int>();
        const auto& previous = entry.at("previous");
        auto current = link.read(pf, vf);
        if (!current) {
            return tl::unexpected(current.error());
        }
        VfSettings settings;
        if (current->mac != previous.at("mac").get<std::string>()) {
            settings.mac = previous.at("mac").get<std::string>();
        }
        if (current->vlan != previous.at("vlan").get<int>() || current->qos != previous.at("qos").get<int>()) {
            settings.vlan = previous.at("vlan").get<int>();
            settings.qos = previous.at("qos").get<int>();
        }
        if (previous.contains("trust") && current->trust != previous["trust"].get<bool>()) {
            settings.trust = previous["trust"].get<bool>();
        }
        if (previous.contains("spoofchk") && current->spoofchk != previous["spoofchk"].get<bool>()) {
            settings.spoofchk = previous["spoofchk"].get<bool>();
        }
        if (auto done = link.apply(pf, vf, settings); !done) {
            return tl::unexpected(done.error());
        }
        return pf + " VF " + std::to_string(vf) + ": mac " + previous.at("mac").get<std::string>() + " vlan " +
               std::to_string(previous.at("vlan").get<int>());
    }
    if (op == "binding") {
        const auto address = entry.at("address").get<std::string>();
        const auto driver = entry.at("previous_driver").get<std::string>();
        const auto override_value = entry.at("previous_override").get<std::string>();
        if (auto current = sysfs.driver(address); !current && current.error().code == SriovErrc::NoSuchVf) {
            return address + ": no longer exists (its VFs were removed), nothing to put back";
        }
        if (auto done = sysfs.restore_binding(address, driver, override_value); !done) {
            return tl::unexpected(done.error());
        }
        return address + ": " + (driver.empty() ? std::string("no driver") : "driver " + driver) +
               ", driver_override " + (override_value.empty() ? std::string("(null)") : override_value);
    }
    return fail(SriovErrc::JournalIo, "unknown journal entry '" + op + "'");
}

}  // namespace

SriovResult<Journal> Journal::load(const fs::path& file) {
    std::ifstream stream(file);
    if (!stream) {
        return fail(SriovErrc::JournalIo, file.string() + ": " + strerror(errno));
    }
    std::stringstream content;
    content << stream.rdbuf();
    return parse(content.str(), file);
}

SriovResult<Journal> Journal::parse(std::string_view text, const fs::path& file) {
    // The journal is ours, but a file on disk: a damaged one must not crash
    // the restore (dump() below recurses as deep as the entry nests).
    if (host_agent::nests_deeper_than(text, host_agent::max_json_depth)) {
        return fail(SriovErrc::JournalIo, file.string() + ": nested deeper than " +
                                              std::to_string(host_agent::max_json_depth) + " levels");
    }
    const auto document = nlohmann::json::parse(text, nullptr, false);
    if (document.is_discarded() || !document.is_object() || !document.contains("entries") ||
        !document["entries"].is_array()) {
        return fail(SriovErrc::JournalIo, file.string() + ": expected a JSON object with an 'entries' array");
    }
    Journal journal(file);
    for (const auto& entry : document["entries"]) {
        if (!entry.is_object() || !entry.contains("op") || !entry["op"].is_string()) {
            return fail(SriovErrc::JournalIo, file.string() + ": an entry without 'op': " + entry.dump());
        }
        journal.m_entries.push_back(entry);
    }
    return journal;
}

SriovResult<void> Journal::save() const {
    if (m_file.empty()) {
        return {};
    }
    std::error_code error;
    if (m_entries.empty()) {
        fs::remove(m_file, error);
        if (error) {
            return fail(SriovErrc::JournalIo, "removing " + m_file.string() + ": " + error.message());
        }
        return {};
    }
    const std::string content = nlohmann::json{{"entries", m_entries}}.dump(2) + "\n";
    if (auto written = write_file_atomically(m_file, content, 0600); !written) {
        return fail(SriovErrc::JournalIo, written.error());
    }
    return {};
}

SriovResult<void> Journal::record(nlohmann::json entry) {
    m_entries.push_back(std::move(entry));
    if (auto saved = save(); !saved) {
        m_entries.pop_back();  // not made: the change must not go ahead either
        return saved;
    }
    return {};
}

Journal::Report Journal::restore(Sysfs& sysfs, const VfLink& link) {
    Report report;
    std::vector<nlohmann::json> kept;
    for (auto entry = m_entries.rbegin(); entry != m_entries.rend(); ++entry) {
        SriovResult<std::string> undone = fail(SriovErrc::JournalIo, "not run");
        try {
            undone = undo_entry(*entry, sysfs, link);
        } catch (const nlohmann::json::exception& error) {
            undone = fail(SriovErrc::JournalIo, "malformed entry " + entry->dump() + ": " + error.what());
        }
        if (undone) {
            report.undone.push_back(*undone);
        } else {
            report.failures.push_back(undone.error().message());
            kept.insert(kept.begin(), *entry);
        }
    }
    m_entries = std::move(kept);
    if (auto saved = save(); !saved) {
        report.failures.push_back(saved.error().message());
    }
    return report;
}

}  // namespace vnetct::sriov
