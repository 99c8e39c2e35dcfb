// The live-TAP local migration rules: a table of its own beside the failover
// one (vnetct/reference_impl/rules.hpp), same shape, ids LT-<area>-<n>. The
// hand-off code and its tests name the rule they implement or check.
// One list of the rule registry (vnetct/reference_impl/rules.hpp:
// all_rules(), rules_of(RuleTable::Livetap), find_rule()).
#pragma once

// X(id, area, sentence)
#define VNETCT_LIVETAP_RULES(X)                                                                \
    X("LT-CFG-01", "configuration",                                                            \
      "Backend transfer happens only when it is enabled both as a migration parameter and on " \
      "the virtio-net device; otherwise no fd is transferred.")                                \
    X("LT-CFG-02", "configuration",                                                            \
      "A TAP netdev with incoming-fds must not also name the ifname, vnet_hdr or fd options; " \
      "such a netdev is refused.")                                                             \
    X("LT-CFG-03", "configuration",                                                            \
      "A target waiting for incoming fds fails with a clear error when the migration does "    \
      "not transfer them.")                                                                    \
    X("LT-CFG-04", "configuration",                                                            \
      "A migration that is not local (its channel is not a unix socket) never transfers "      \
      "fds.")                                                                                  \
    X("LT-STATE-01", "state",                                                                  \
      "The TAP state travels with the fds: TUNGETIFF flags, ifindex, name, vnet header size "  \
      "and endianness, sndbuf, queue count, and the offload bits, which have no getter.")      \
    X("LT-STATE-02", "state",                                                                  \
      "The state is encoded with magic, version, length and checksum; a message that is "      \
      "truncated, corrupt, oversized or of an unknown version is rejected.")                   \
    X("LT-STATE-03", "state",                                                                  \
      "The target validates the state against the fds it received; a mismatch is an error "    \
      "that rejects the hand-off, never a silent continue.")                                   \
    X("LT-XFER-01", "hand-off",                                                                \
      "Every queue fd travels in one SCM_RIGHTS message together with the state; a message "   \
      "whose fd count differs from the state's queue count is rejected.")                      \
    X("LT-XFER-02", "hand-off",                                                                \
      "The source stops reading the queues before it sends them and never reads again once "  \
      "it has committed the hand-off.")                                                        \
    X("LT-XFER-03", "hand-off",                                                                \
      "A target started with incoming fds never opens /dev/net/tun and never reconfigures "    \
      "the device.")                                                                           \
    X("LT-XFER-04", "hand-off",                                                                \
      "If the target rejects the hand-off or dies before it is committed, the source keeps "   \
      "its fds and resumes reading.")                                                          \
    X("LT-DATA-01", "datapath",                                                                \
      "No frame is lost or duplicated across the hand-off while the blackout stays within "    \
      "the queue's capacity: the target's first frame follows the source's last.")            \
    X("LT-DATA-02", "datapath",                                                                \
      "The device survives the hand-off unchanged: same ifindex, vnet header size and "        \
      "offloads, carrier never changed, counters continuous.")
