// The rule table of the executable specification. Every conformance case names
// the rule(s) it checks by id; the docs, `vnetct list` and the failure messages
// are all generated from this one list.
#pragma once

#include <optional>
#include <span>
#include <string_view>

namespace vnetct::reference_impl {

// X(id, area, sentence)
#define VNETCT_FAILOVER_RULES(X)                                                              \
    X("FO-NEG-01", "negotiation",                                                             \
      "The primary stays hidden from the guest (absent from the PCI bus) until the guest "    \
      "acks VIRTIO_NET_F_STANDBY.")                                                           \
    X("FO-NEG-02", "negotiation",                                                             \
      "When the guest acks VIRTIO_NET_F_STANDBY (bit 62) the host emits "                     \
      "FAILOVER_NEGOTIATED with the standby's device id and plugs the primary.")              \
    X("FO-PAIR-01", "pairing",                                                                \
      "The guest forms one failover master with the standby and the primary as its slaves, "  \
      "all three with the standby's MAC, the primary with a PCI parent.")                     \
    X("FO-DATA-01", "datapath",                                                               \
      "The failover master carries traffic between the wire and the guest.")                  \
    X("FO-CFG-01", "configuration", "A primary (failover_pair_id set) must have an id.")      \
    X("FO-CFG-02", "configuration",                                                           \
      "A primary must sit on a hot-pluggable PCIe port, not on the root bus; otherwise the "  \
      "guest never gets it and the host reports an error.")                                   \
    X("FO-CFG-03", "configuration",                                                           \
      "A primary must be alone in its PCI slot (not multifunction, function 0); otherwise "   \
      "the guest never gets it and the host reports an error.")                               \
    X("FO-CFG-04", "configuration",                                                           \
      "A primary whose failover_pair_id names no failover standby is not hidden: it is an "   \
      "ordinary device visible from the start, and when the standby negotiates the host "     \
      "warns that the standby's primary was not found.")                                      \
    X("FO-CFG-05", "configuration",                                                           \
      "A standby with failover=off does not offer VIRTIO_NET_F_STANDBY: the guest does not "  \
      "ack bit 62, no FAILOVER_NEGOTIATED is emitted and no failover master is formed.")

struct Rule {
    std::string_view id;
    std::string_view area;
    std::string_view sentence;
};

// All rules, in table order.
[[nodiscard]] std::span<const Rule> failover_rules();

// The rule with this id, if any.
[[nodiscard]] std::optional<Rule> find_rule(std::string_view id);

}  // namespace vnetct::reference_impl
