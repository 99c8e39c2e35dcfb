// The rule registry of the executable specification. Every conformance case
// names the rule(s) it checks by id; the docs, `vnetct list` and the failure
// messages are all generated from the registry (rules.cpp), which gathers the
// failover list below and the live-TAP, teaming and group-id lists.
#pragma once

#include <optional>
#include <span>
#include <string_view>

namespace vnetct::reference_impl {

// X(id, area, sentence)
//
// FO-MIG-SRC-07: "the host's unplug timeout" is any bound the host puts on its wait
// for the guest's release: one from the migration's start (it ends wait-unplug as
// failed, cancelling as cancelled) and/or one from a cancel in wait-unplug (it ends
// cancelling as cancelled); with both, the earlier ends the wait. QEMU 10 has only the
// second (30 s); its warning ("migration: partially unplugged device on failure") does
// not name the primary, a wording deviation documented but not judged (trace_checker.hpp,
// judging rule 3). The model's form: ModelOptions::unplug_timeout and
// cancel_unplug_timeout (failover_model.hpp).
#define VNETCT_FAILOVER_RULES(X)                                                               \
    X("FO-NEG-01", "negotiation",                                                              \
      "The primary stays hidden from the guest (absent from the PCI bus) until the guest "     \
      "acks VIRTIO_NET_F_STANDBY.")                                                            \
    X("FO-NEG-02", "negotiation",                                                              \
      "When the guest acks VIRTIO_NET_F_STANDBY (bit 62) the host emits "                      \
      "FAILOVER_NEGOTIATED with the standby's device id and plugs the primary.")               \
    X("FO-PAIR-01", "pairing",                                                                 \
      "The guest forms one failover master with the standby and the primary as its slaves, "   \
      "all three with the standby's MAC, the primary with a PCI parent.")                      \
    X("FO-DATA-01", "datapath",                                                                \
      "The failover master carries traffic between the wire and the guest.")                   \
    X("FO-CFG-01", "configuration", "A primary (failover_pair_id set) must have an id.")       \
    X("FO-CFG-02", "configuration",                                                            \
      "A primary must sit on a hot-pluggable PCIe port, not on the root bus; otherwise the "   \
      "guest never gets it and the host reports an error.")                                    \
    X("FO-CFG-03", "configuration",                                                            \
      "A primary must be alone in its PCI slot (not multifunction, function 0); otherwise "    \
      "the guest never gets it and the host reports an error.")                                \
    X("FO-CFG-04", "configuration",                                                            \
      "A primary whose failover_pair_id names no failover standby is not hidden: it is an "    \
      "ordinary device visible from the start, and when the standby negotiates the host "      \
      "warns that the standby's primary was not found.")                                       \
    X("FO-CFG-05", "configuration",                                                            \
      "A standby with failover=off does not offer VIRTIO_NET_F_STANDBY: the guest does not "   \
      "ack bit 62, no FAILOVER_NEGOTIATED is emitted and no failover master is formed.")       \
    X("FO-CFG-06", "configuration",                                                            \
      "A primary must be a network (Ethernet-class) device on a PCI Express bus; otherwise "   \
      "the guest never gets it and the host reports an error.")                                \
    X("FO-CFG-07", "configuration",                                                            \
      "A primary must not occupy its standby's PCI slot; otherwise the guest never gets it "   \
      "and the host reports an error.")                                                        \
    X("FO-CFG-08", "configuration",                                                            \
      "A primary is hidden only when its failover_pair_id names a failover=on standby that "   \
      "exists when the primary is added; a primary added before its standby is visible at "    \
      "once and becomes that standby's primary when the standby is added.")                    \
    X("FO-CFG-09", "configuration",                                                            \
      "A standby has at most one primary: a device whose failover_pair_id names a standby "    \
      "that already has a primary is refused.")                                                \
    X("FO-NEG-03", "negotiation",                                                              \
      "A guest that does not ack VIRTIO_NET_F_STANDBY never gets the primary: it stays "       \
      "hidden and no FAILOVER_NEGOTIATED is emitted.")                                         \
    X("FO-NEG-04", "negotiation",                                                              \
      "A guest reset withdraws the negotiation: the host hides the primary again and plugs "   \
      "it (with a new FAILOVER_NEGOTIATED) only after the guest acks VIRTIO_NET_F_STANDBY "    \
      "anew.")                                                                                 \
    X("FO-MIG-SRC-01", "migration source",                                                     \
      "When a migration starts, the source emits UNPLUG_PRIMARY with the primary's device "    \
      "id for every negotiated primary the guest holds and asks the guest to release it.")     \
    X("FO-MIG-SRC-02", "migration source",                                                     \
      "When the guest holds a primary at setup, the migration enters wait-unplug and leaves "  \
      "it for active as soon as the guest has released every requested primary.")              \
    X("FO-MIG-SRC-03", "migration source",                                                     \
      "The migration never reaches active or completed while the guest still holds a "         \
      "primary whose release was requested.")                                                  \
    X("FO-MIG-SRC-04", "migration source",                                                     \
      "A cancel during wait-unplug moves the migration to cancelling; it becomes cancelled "   \
      "only once the guest has released every requested primary, and the source then plugs "   \
      "each of them back.")                                                                    \
    X("FO-MIG-SRC-05", "migration source",                                                     \
      "When a migration is cancelled or fails after the guest released a primary, the "        \
      "source plugs that primary back into the guest.")                                        \
    X("FO-MIG-SRC-06", "migration source",                                                     \
      "A cancel that arrives after the migration completed has no effect: the migration "      \
      "stays completed and no primary is plugged back on the source.")                         \
    X("FO-MIG-SRC-07", "migration source",                                                     \
      "A guest that never releases a requested primary keeps the migration in wait-unplug "    \
      "(or cancelling) until the host's unplug timeout, if it has one, ends it as failed (or " \
      "cancelled) with a warning naming the primary.")                                         \
    X("FO-MIG-TGT-01", "migration target",                                                     \
      "A target started for an incoming migration keeps every primary hidden until the "       \
      "migrated state has been loaded.")                                                       \
    X("FO-MIG-TGT-02", "migration target",                                                     \
      "Once the migrated state is loaded, the target emits FAILOVER_NEGOTIATED and plugs the " \
      "primary for every standby whose guest had acked VIRTIO_NET_F_STANDBY, and only then "   \
      "emits RESUME and completes.")                                                           \
    X("FO-MIG-TGT-03", "migration target",                                                     \
      "After RESUME the target announces the standby's MAC on the wire (QEMU's self-announce " \
      "frames, or the guest's gratuitous ARP where VIRTIO_NET_F_GUEST_ANNOUNCE is "            \
      "negotiated): the first within announce-initial, announce-rounds in all, spaced by "     \
      "announce-step growing up to announce-max.")

struct Rule {
    std::string_view id;
    std::string_view area;
    std::string_view sentence;
};

// The rule tables, one X-macro list each: this file's failover rules (FO-*),
// vnetct/livetap/rules.hpp (LT-*), vnetct/teaming/rules.hpp (TEAM-*) and
// vnetct/groupid/rules.hpp (FO-GRP-*). One registry holds them all, in this
// order; ids are unique across it.
enum class RuleTable { Failover, Livetap, Teaming, GroupId };

// Every rule of every table, in table order.
[[nodiscard]] std::span<const Rule> all_rules();

// One table's rules, in table order.
[[nodiscard]] std::span<const Rule> rules_of(RuleTable table);

// The rule with this id, from any table, if any.
[[nodiscard]] std::optional<Rule> find_rule(std::string_view id);

}  // namespace vnetct::reference_impl
