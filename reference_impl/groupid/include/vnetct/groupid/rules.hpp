// The failover-group-id rules (a proposal neither QEMU nor virtio adopted;
// the layout is in groupid.hpp), beside the failover rules, same shape.
// One list of the rule registry (vnetct/reference_impl/rules.hpp:
// all_rules(), rules_of(RuleTable::GroupId), find_rule()).
#pragma once

// X(id, area, sentence)
#define VNETCT_GROUPID_RULES(X)                                                                 \
    X("FO-GRP-01", "group id",                                                                   \
      "A standby's group id is a virtio vendor capability (cfg_type 6) of its own PCI function; " \
      "a primary's is a vendor-specific capability of the bridge above it; both little-endian "  \
      "64-bit.")                                                                                 \
    X("FO-GRP-02", "group id",                                                                   \
      "When the standby and the primary both carry a group id, they pair if and only if the ids " \
      "are equal, whatever their MACs.")                                                         \
    X("FO-GRP-03", "group id",                                                                   \
      "When neither carries a group id, they pair by MAC, as without the proposal.")             \
    X("FO-GRP-04", "group id",                                                                   \
      "When only one of them carries a group id, they do not pair: one side asked for explicit "  \
      "grouping and the other cannot match it.")                                                 \
    X("FO-GRP-05", "group id",                                                                   \
      "A config space whose capability list is malformed (no list, a pointer into the header "   \
      "or past the end, a loop, a cut capability) gives an error, never a hang or a guess.")
