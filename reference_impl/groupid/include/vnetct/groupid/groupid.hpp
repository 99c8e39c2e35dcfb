// failover-group-id: pairing a standby and a primary by a 64-bit group id
// instead of (or besides) the MAC, as proposed for virtio-net failover in
// June-July 2018 (Venu Busireddy's series: QEMU "failover-group-id" on
// virtio-net and on a PCI bridge; the virtio spec patch adding
// VIRTIO_PCI_CAP_GROUP_ID_CFG). Neither QEMU nor the virtio spec adopted it.
// The virtio capability follows that spec patch (cfg_type 6, the u64 right
// after the 16-byte capability, bar, offset and length all 0); the bridge's
// layout was not found and is this project's:
//
// On the NIC (the virtio-net standby): a virtio PCI vendor capability
//   struct virtio_pci_cap { u8 cap_vndr = 0x09; u8 cap_next; u8 cap_len = 24;
//                           u8 cfg_type = VIRTIO_PCI_CAP_GROUP_ID_CFG (6);
//                           u8 bar = 0; u8 id = 0; u8 padding[2];
//                           le32 offset = 0; le32 length = 0; }
//   followed by le64 group_id (bytes 16..23); a non-zero bar, offset or
//   length makes the capability malformed.
// On the bridge above the primary: a PCI vendor-specific capability
//   { u8 id = 0x09; u8 next; u8 len = 12; u8 type = 0x47 ('G');
//     le64 group_id at bytes 4..11 } (len 12). The type byte tells it from
//   other vendor capabilities (a virtio cap has its cfg_type, 1..9, there).
//
// The capability list is walked defensively (FO-GRP-05): the status
// register's capabilities bit must be set; a pointer's low two bits are
// reserved and masked off, as the PCI spec tells software to do; a pointer
// into the 64-byte header or past the image, a capability cut by the end of
// the image, a revisited offset (a loop) or more than 48 capabilities (all
// that fit in 256 bytes) are errors, never a hang.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "vnetct/common/result.hpp"

namespace vnetct::groupid {

#define VNETCT_GROUPID_ERRORS(X)                                                   \
    X(Truncated, "the config space image ends inside the data being read")        \
    X(NoCapabilityList, "the status register says there is no capability list")  \
    X(BadPointer, "a capability pointer points into the header or past the image") \
    X(Loop, "the capability list loops")                                           \
    X(BadCapability, "a group id capability is malformed")

VNETCT_DEFINE_ERRC(GroupIdErrc, VNETCT_GROUPID_ERRORS)

template <typename T>
using GroupIdResult = vnetct::Result<T, GroupIdErrc>;

inline constexpr std::uint8_t cap_id_vendor = 0x09;
inline constexpr std::uint8_t virtio_pci_cap_group_id_cfg = 6;
inline constexpr std::uint8_t virtio_group_cap_len = 24;
inline constexpr std::uint8_t bridge_group_cap_len = 12;
inline constexpr std::uint8_t bridge_group_cap_type = 0x47;  // 'G'
inline constexpr std::size_t max_capabilities = 48;

struct Capability {
    std::uint8_t offset = 0;
    std::uint8_t id = 0;
    std::uint8_t next = 0;  // as read, low bits not yet masked
};

// Every capability of a config-space image, in list order.
[[nodiscard]] GroupIdResult<std::vector<Capability>> walk_capabilities(std::span<const std::uint8_t> config);

// The group id a NIC's own config space carries (a virtio vendor capability
// of cfg_type 6); none when it has no such capability.
[[nodiscard]] GroupIdResult<std::optional<std::uint64_t>> nic_group_id(std::span<const std::uint8_t> config);
// The group id a bridge's config space carries (its vendor capability).
[[nodiscard]] GroupIdResult<std::optional<std::uint64_t>> bridge_group_id(std::span<const std::uint8_t> config);

// Config-space images (256 bytes) for tests and the reference profile: a
// virtio-net PCI function with the usual virtio capabilities and, if given,
// the group id; a PCIe root port with, if given, the group id capability.
[[nodiscard]] std::vector<std::uint8_t> encode_nic_config(std::optional<std::uint64_t> group_id);
[[nodiscard]] std::vector<std::uint8_t> encode_bridge_config(std::optional<std::uint64_t> group_id);

// FO-GRP-02..04: do a standby and a primary pair?
struct PairingDecision {
    bool paired = false;
    std::string by;   // "group-id", "mac", or "" when they do not pair
    std::string why;
};
[[nodiscard]] PairingDecision decide_pairing(const std::string& standby_mac, std::optional<std::uint64_t> standby_group,
                                             const std::string& primary_mac, std::optional<std::uint64_t> primary_group);

[[nodiscard]] std::string format_group_id(std::uint64_t id);  // "0x" + 16 hex digits

}  // namespace vnetct::groupid
