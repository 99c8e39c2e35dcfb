// The libvirt domain XML reader (vnetct check-config, TEAM-*): the XML is the
// user's or a vendor's file. parse_domain must refuse what it cannot read with
// a TeamingError, never load anything (no DTD, no entities, no network), and
// check() must run on whatever it accepted.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "fuzz_support.hpp"
#include "vnetct/teaming/rules.hpp"
#include "vnetct/teaming/teaming.hpp"

using namespace vnetct::teaming;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    vnetct::fuzz::maybe_seeded_bug(std::span<const std::uint8_t>(data, size));
    const std::string_view xml(reinterpret_cast<const char*>(data), size);
    const std::size_t loads_before = external_loads_attempted();
    auto domain = parse_domain(xml, "fuzz.xml");
    // An external load that was asked for is refused and counted; none may
    // have happened unnoticed, and parsing must go on or fail as a value.
    VNETCT_FUZZ_CHECK(external_loads_attempted() >= loads_before);
    if (!domain) {
        VNETCT_FUZZ_CHECK(!domain.error().message().empty());
        return 0;
    }
    const Verdict verdict = check(*domain);
    for (const Violation& violation : verdict.violations) {
        const std::string_view rule = violation.rule;
        VNETCT_FUZZ_CHECK(rule.starts_with("TEAM-") || rule.starts_with("FO-CFG-"));
        VNETCT_FUZZ_CHECK(!violation.message.empty());
    }
    if (verdict.conformant()) {
        VNETCT_FUZZ_CHECK(verdict.argv.size() % 2 == 0);
    }
    return 0;
}
