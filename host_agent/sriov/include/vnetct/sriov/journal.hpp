// The undo journal: every change the SR-IOV set-up makes to the host is
// recorded *before* it is made (write-ahead), with the value it replaces, and
// saved to a file, so that a crash or Ctrl-C between the change and the end of
// the run still leaves the record of how to put it back. restore() replays it
// in reverse order, goes on past an entry that fails, reports every failure,
// and is idempotent (an entry whose state is already the recorded one is a
// no-op). Entries (JSON objects):
//   {"op": "num_vfs", "pf": P, "previous": N}
//   {"op": "vf_link", "pf": P, "vf": N, "previous": {"mac", "vlan", "qos", "trust"?, "spoofchk"?}}
//   {"op": "binding", "address": A, "previous_driver": D, "previous_override": O}
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "vnetct/sriov/errors.hpp"
#include "vnetct/sriov/sysfs.hpp"
#include "vnetct/sriov/vf_link.hpp"

namespace vnetct::sriov {

class Journal {
  public:
    // An empty path keeps the journal in memory only.
    explicit Journal(std::filesystem::path file = {}) : m_file(std::move(file)) {}
    // A journal left behind by an earlier run (JournalIo if unreadable or malformed).
    static SriovResult<Journal> load(const std::filesystem::path& file);
    // The same for the file's text already read (JournalIo if malformed);
    // `file` names it and is where later changes are saved.
    static SriovResult<Journal> parse(std::string_view text, const std::filesystem::path& file);

    // Appends and saves (the file is replaced atomically).
    SriovResult<void> record(nlohmann::json entry);
    [[nodiscard]] const std::vector<nlohmann::json>& entries() const { return m_entries; }
    [[nodiscard]] const std::filesystem::path& file() const { return m_file; }
    [[nodiscard]] bool empty() const { return m_entries.empty(); }

    struct Report {
        std::vector<std::string> undone;    // one line per entry put back (or already as recorded)
        std::vector<std::string> failures;  // one line per entry that could not be put back
    };
    // Replays the entries in reverse. Entries that were put back leave the
    // journal; failed ones stay (and stay in the file) for another try. The
    // file is removed once the journal is empty.
    Report restore(Sysfs& sysfs, const VfLink& link);

  private:
    SriovResult<void> save() const;
    std::filesystem::path m_file;
    std::vector<nlohmann::json> m_entries;
};

}  // namespace vnetct::sriov
