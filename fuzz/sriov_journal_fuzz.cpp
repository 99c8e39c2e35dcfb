// The SR-IOV undo journal read back after a crash (Journal::parse, then
// restore()): the file may be cut short or damaged. Malformed text is a
// JournalIo error; any accepted journal restores without throwing, each entry
// either put back or reported, against a host where nothing can be changed.
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.hpp"
#include "vnetct/sriov/journal.hpp"

using namespace vnetct::sriov;

namespace {

// A PF driver that reports VFs 0..3 and takes every setting.
class AcceptingVfLink : public VfLink {
  public:
    SriovResult<std::vector<VfLinkState>> read(const std::string& /*pf*/) const override {
        std::vector<VfLinkState> vfs;
        for (int vf = 0; vf < 4; ++vf) {
            vfs.push_back(VfLinkState{vf, "52:54:00:00:00:0" + std::to_string(vf), 0, 0, true, false});
        }
        return vfs;
    }
    SriovResult<void> apply(const std::string& /*pf*/, int /*vf*/, const VfSettings& /*settings*/) const override {
        return {};
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    vnetct::fuzz::maybe_seeded_bug(std::span<const std::uint8_t>(data, size));
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    auto journal = Journal::parse(text, {});  // no file: kept in memory, never saved
    if (!journal) {
        VNETCT_FUZZ_CHECK(journal.error().code == SriovErrc::JournalIo);
        return 0;
    }
    const std::size_t entries = journal->entries().size();
    // A sysfs that does not exist, whose writes are refused: every change fails.
    Sysfs sysfs("/nonexistent/vnetct-fuzz-sysfs", [](const std::filesystem::path&, const std::string&) { return EACCES; });
    const AcceptingVfLink link;
    const Journal::Report report = journal->restore(sysfs, link);
    VNETCT_FUZZ_CHECK(report.undone.size() + report.failures.size() == entries);
    VNETCT_FUZZ_CHECK(journal->entries().size() == report.failures.size());
    return 0;
}
