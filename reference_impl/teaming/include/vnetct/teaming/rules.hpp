// The libvirt teaming rules, a table beside the failover and live-TAP ones
// (same shape). TEAM-01..06 are libvirt's (docs/formatdomain.rst, teaming);
// TEAM-07 is what failover itself needs of the pair (FO-PAIR-01: the guest
// pairs by MAC). The QEMU-side placement rules stay the failover model's
// FO-CFG-* rules, which check() applies to the addresses in the XML.
// One list of the rule registry (vnetct/reference_impl/rules.hpp:
// all_rules(), rules_of(RuleTable::Teaming), find_rule()).
#pragma once

// X(id, area, sentence)
#define VNETCT_TEAMING_RULES(X)                                                                   \
    X("TEAM-01", "libvirt teaming",                                                                \
      "The teaming type is 'persistent' or 'transient'.")                                         \
    X("TEAM-02", "libvirt teaming",                                                                \
      "An interface with teaming type 'persistent' is a virtio interface (<model "                \
      "type='virtio'/>).")                                                                         \
    X("TEAM-03", "libvirt teaming",                                                                \
      "An interface with teaming type 'transient' is a hostdev interface (type='hostdev').")      \
    X("TEAM-04", "libvirt teaming",                                                                \
      "The persistent attribute is required with teaming type 'transient' and not allowed with " \
      "type 'persistent'.")                                                                        \
    X("TEAM-05", "libvirt teaming",                                                                \
      "A transient interface's persistent attribute names the user alias (<alias "                \
      "name='ua-...'/>) of an interface with teaming type 'persistent'.")                          \
    X("TEAM-06", "libvirt teaming",                                                                \
      "A persistent interface has at most one transient interface naming it.")                    \
    X("TEAM-07", "libvirt teaming",                                                                \
      "The transient interface has the MAC address of its persistent interface (the guest "       \
      "pairs the primary with the standby by MAC).")                                               \
    X("TEAM-08", "checker input",                                                                  \
      "A domain XML that cannot be read, exceeds 1 MiB, is not well-formed, declares a DOCTYPE "  \
      "or is not a <domain> is refused with an error naming the file and the line; nothing "       \
      "outside the document (DTD, entity, network) is ever read.")
