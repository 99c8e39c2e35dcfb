// libvirt's <teaming> element: the management-side way to configure virtio-net
// failover. A domain XML pairs a virtio <interface> (teaming type='persistent',
// the standby) with a hostdev <interface> (teaming type='transient'
// persistent='<alias of the virtio one>', the primary, a VF given to vfio-pci).
// libvirt turns that into `-device virtio-net-pci,...,failover=on` and
// `-device vfio-pci,...,failover_pair_id=<alias>`.
//
// parse_domain() reads the XML with libxml2 and never loads anything from
// outside: no network, no DTD, no external entity; a DOCTYPE (the only way to
// declare entities) is refused outright, as is a file over max_domain_bytes.
// check() applies the TEAM-* rules (rules.hpp) and the failover model's
// QEMU-side configuration rules (FO-CFG-*) to what the XML places where, and
// builds the argv fragment libvirt would hand to QEMU for the team.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vnetct/common/result.hpp"

namespace vnetct::teaming {

#define VNETCT_TEAMING_ERRORS(X)                                                         \
    X(Unreadable, "cannot read the domain XML")                                          \
    X(TooLarge, "the domain XML is larger than the limit")                               \
    X(Malformed, "the domain XML is not well-formed")                                    \
    X(Forbidden, "the domain XML declares a DOCTYPE or entities, which are not allowed") \
    X(NotADomain, "the document is not a libvirt domain")                                \
    X(BadValue, "an attribute has a value that cannot be used")

VNETCT_DEFINE_ERRC(TeamingErrc, VNETCT_TEAMING_ERRORS)

template <typename T>
using TeamingResult = vnetct::Result<T, TeamingErrc>;
using TeamingError = vnetct::Error<TeamingErrc>;

// libvirt domain XMLs are a few KiB; anything this large is refused unparsed.
inline constexpr std::size_t max_domain_bytes = 1 << 20;

struct PciAddress {
    unsigned domain = 0;
    unsigned bus = 0;
    unsigned slot = 0;
    unsigned function = 0;
    bool multifunction = false;
    int line = 0;
};

struct Controller {
    std::string model;  // pcie-root, pcie-root-port, pci-bridge, ...
    unsigned index = 0;
    int line = 0;
};

struct Interface {
    int line = 0;                      // of <interface>
    std::string type;                  // network, bridge, hostdev, ...
    std::string model;                 // <model type=...>, "" when absent
    std::string alias;                 // <alias name=...>, "" when absent
    int alias_line = 0;
    std::string mac;                   // <mac address=...>, lower case; "" when absent
    int mac_line = 0;
    std::optional<std::string> teaming_type;
    std::optional<std::string> teaming_persistent;
    int teaming_line = 0;
    std::optional<PciAddress> address;         // where the guest sees it
    std::optional<PciAddress> source_address;  // hostdev: the host's device (the VF)
};

struct Domain {
    std::string file;     // as given, for messages
    std::string machine;  // <os><type machine=...>
    std::vector<Interface> interfaces;
    std::vector<Controller> controllers;
};

// Parses a domain XML held in memory; `file` names it in errors.
[[nodiscard]] TeamingResult<Domain> parse_domain(std::string_view xml, std::string_view file);
[[nodiscard]] TeamingResult<Domain> parse_domain_file(const std::string& path);

// How many times, in this process, libxml2 asked to load an external entity or
// DTD while parsing a domain (every such request is refused): a test hook.
[[nodiscard]] std::size_t external_loads_attempted();

struct Violation {
    std::string rule;       // TEAM-* or FO-CFG-*
    int line = 0;
    std::string element;    // e.g. "teaming", "interface", "address"
    std::string attribute;  // e.g. "persistent"; "" for the element itself
    std::string message;
};

struct Verdict {
    std::vector<Violation> violations;
    std::vector<std::string> argv;  // the team's -device options, "-device" and value alternating
    [[nodiscard]] bool conformant() const { return violations.empty(); }
};

[[nodiscard]] Verdict check(const Domain& domain);

}  // namespace vnetct::teaming
