#include "vnetct/groupid/groupid.hpp"

#include <array>
#include <bitset>
#include <cstdio>

namespace vnetct::groupid {
namespace {

constexpr std::size_t kHeaderBytes = 0x40;
constexpr std::size_t kStatusRegister = 0x06;
constexpr std::uint8_t kStatusCapList = 0x10;
constexpr std::size_t kCapabilitiesPointer = 0x34;
constexpr std::size_t kConfigBytes = 256;

std::string at(std::size_t offset) {
    char text[24];
    std::snprintf(text, sizeof text, "0x%02zx", offset);
    return text;
}

std::uint64_t read_le64(std::span<const std::uint8_t> bytes, std::size_t offset) {
    std::uint64_t value = 0;
    for (int i = 7; i >= 0; --i) {
        value = value << 8 | bytes[offset + static_cast<std::size_t>(i)];
    }
    return value;
}

void write_le(std::vector<std::uint8_t>& bytes, std::size_t offset, std::uint64_t value, int width) {
    for (int i = 0; i < width; ++i) {
        bytes[offset + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(value >> (8 * i));
    }
}

// A config space with vendor/device/class and a capability list built from
// (id, body) entries, placed from 0x40 on, 4-byte aligned.
std::vector<std::uint8_t> build(std::uint16_t vendor, std::uint16_t device, std::uint32_t class_code,
                                std::uint8_t header_type, const std::vector<std::vector<std::uint8_t>>& caps) {
    std::vector<std::uint8_t> config(kConfigBytes, 0);
    write_le(config, 0x00, vendor, 2);
    write_le(config, 0x02, device, 2);
    write_le(config, 0x09, class_code, 3);  // prog-if, subclass, class
    config[0x0e] = header_type;
    if (caps.empty()) {
        return config;
    }
    config[kStatusRegister] = kStatusCapList;
    std::size_t offset = kHeaderBytes;
    config[kCapabilitiesPointer] = static_cast<std::uint8_t>(offset);
    for (std::size_t i = 0; i < caps.size(); ++i) {
        const auto& cap = caps[i];
        const std::size_t next = i + 1 < caps.size() ? (offset + cap.size() + 3) & ~std::size_t{3} : 0;
        std::copy(cap.begin(), cap.end(), config.begin() + static_cast<std::ptrdiff_t>(offset));
        config[offset + 1] = static_cast<std::uint8_t>(next);
        offset = next;
    }
    return config;
}

std::vector<std::uint8_t> virtio_cap(std::uint8_t cfg_type, std::uint8_t bar, std::uint32_t region_offset,
                                     std::uint32_t length, std::uint8_t cap_len = 16) {
    std::vector<std::uint8_t> cap(cap_len, 0);
    cap[0] = cap_id_vendor;
    cap[2] = cap_len;
    cap[3] = cfg_type;
    cap[4] = bar;
    write_le(cap, 8, region_offset, 4);
    write_le(cap, 12, length, 4);
    return cap;
}

}  // namespace

GroupIdResult<std::vector<Capability>> walk_capabilities(std::span<const std::uint8_t> config) {
    if (config.size() < kHeaderBytes) {
        return fail(GroupIdErrc::Truncated, "the image has " + std::to_string(config.size()) +
                                                " bytes, fewer than the 64-byte header");
    }
    if ((config[kStatusRegister] & kStatusCapList) == 0) {
        return fail(GroupIdErrc::NoCapabilityList, "status register (0x06) bit 4 is clear");
    }
    std::vector<Capability> found;
    std::bitset<kConfigBytes> visited;
    std::size_t pointer = config[kCapabilitiesPointer] & 0xfc;  // the low two bits are reserved
    std::size_t from = kCapabilitiesPointer;
    while (pointer != 0) {
        if (pointer < kHeaderBytes || pointer >= config.size()) {
            return fail(GroupIdErrc::BadPointer, "the pointer at " + at(from) + " is " + at(pointer) +
                                                     ", expected 0x40.." + at(config.size() - 1) + " or 0");
        }
        if (pointer + 2 > config.size()) {
            return fail(GroupIdErrc::Truncated, "the capability at " + at(pointer) + " is cut by the image's end");
        }
        if (visited.test(pointer) || found.size() >= max_capabilities) {
            return fail(GroupIdErrc::Loop, "the list returns to " + at(pointer) + " after " +
                                               std::to_string(found.size()) + " capabilities");
        }
        visited.set(pointer);
        found.push_back(Capability{static_cast<std::uint8_t>(pointer), config[pointer], config[pointer + 1]});
        from = pointer + 1;
        pointer = config[pointer + 1] & 0xfc;
    }
    return found;
}

GroupIdResult<std::optional<std::uint64_t>> nic_group_id(std::span<const std::uint8_t> config) {
    auto caps = walk_capabilities(config);
    if (!caps) {
        if (caps.error().code == GroupIdErrc::NoCapabilityList) {
            return std::optional<std::uint64_t>{};  // a function without capabilities has no group id
        }
        return tl::unexpected(caps.error());
    }
    for (const Capability& cap : *caps) {
        if (cap.id != cap_id_vendor) {
            continue;
        }
        if (cap.offset + 4u > config.size()) {
            return fail(GroupIdErrc::Truncated, "the vendor capability at " + at(cap.offset) + " is cut before its type");
        }
        if (config[cap.offset + 3] != virtio_pci_cap_group_id_cfg) {
            continue;
        }
        const std::uint8_t length = config[cap.offset + 2];
        if (length < virtio_group_cap_len) {
            return fail(GroupIdErrc::BadCapability, "the group id capability at " + at(cap.offset) + " has cap_len " +
                                                        std::to_string(length) + ", expected 24");
        }
        if (cap.offset + std::size_t{virtio_group_cap_len} > config.size()) {
            return fail(GroupIdErrc::Truncated, "the group id capability at " + at(cap.offset) +
                                                    " is cut by the image's end");
        }
        const std::size_t at_cap = cap.offset;
        if (config[at_cap + 4] != 0 || read_le64(config, at_cap + 8) != 0) {  // bar; offset and length
            return fail(GroupIdErrc::BadCapability, "the group id capability at " + at(at_cap) +
                                                        " names a bar, offset or length; all must be 0");
        }
        return std::optional<std::uint64_t>{read_le64(config, at_cap + 16u)};
    }
    return std::optional<std::uint64_t>{};
}

GroupIdResult<std::optional<std::uint64_t>> bridge_group_id(std::span<const std::uint8_t> config) {
    auto caps = walk_capabilities(config);
    if (!caps) {
        if (caps.error().code == GroupIdErrc::NoCapabilityList) {
            return std::optional<std::uint64_t>{};
        }
        return tl::unexpected(caps.error());
    }
    for (const Capability& cap : *caps) {
        if (cap.id != cap_id_vendor) {
            continue;
        }
        if (cap.offset + 4u > config.size()) {
            return fail(GroupIdErrc::Truncated, "the vendor capability at " + at(cap.offset) + " is cut before its type");
        }
        if (config[cap.offset + 3] != bridge_group_cap_type) {
            continue;  // another vendor capability
        }
        if (config[cap.offset + 2] != bridge_group_cap_len) {
            return fail(GroupIdErrc::BadCapability, "the bridge's group id capability at " + at(cap.offset) +
                                                        " has length " + std::to_string(config[cap.offset + 2]) +
                                                        ", expected 12");
        }
        if (cap.offset + std::size_t{bridge_group_cap_len} > config.size()) {
            return fail(GroupIdErrc::Truncated, "the bridge's group id capability at " + at(cap.offset) +
                                                    " is cut by the image's end");
        }
        return std::optional<std::uint64_t>{read_le64(config, cap.offset + 4u)};
    }
    return std::optional<std::uint64_t>{};
}

std::vector<std::uint8_t> encode_nic_config(std::optional<std::uint64_t> group_id) {
    // virtio 1.x: common (1), notify (2, with its multiplier), ISR (3), device (4) in BAR 4.
    std::vector<std::vector<std::uint8_t>> caps{virtio_cap(1, 4, 0x0000, 0x1000), virtio_cap(3, 4, 0x1000, 0x1000),
                                                virtio_cap(4, 4, 0x2000, 0x1000), virtio_cap(2, 4, 0x3000, 0x1000, 20)};
    if (group_id) {
        auto cap = virtio_cap(virtio_pci_cap_group_id_cfg, 0, 0, 0, virtio_group_cap_len);
        write_le(cap, 16, *group_id, 8);
        caps.push_back(cap);
    }
    caps.push_back({0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});  // MSI-X, last: not every list ends with ours
    return build(0x1af4, 0x1041, 0x020000, 0x00, caps);
}

std::vector<std::uint8_t> encode_bridge_config(std::optional<std::uint64_t> group_id) {
    std::vector<std::vector<std::uint8_t>> caps{std::vector<std::uint8_t>(0x3c, 0)};  // PCIe capability
    caps[0][0] = 0x10;
    if (group_id) {
        std::vector<std::uint8_t> cap(bridge_group_cap_len, 0);
        cap[0] = cap_id_vendor;
        cap[2] = bridge_group_cap_len;
        cap[3] = bridge_group_cap_type;
        write_le(cap, 4, *group_id, 8);
        caps.push_back(cap);
    }
    return build(0x1b36, 0x000c, 0x060400, 0x01, caps);  // QEMU's pcie-root-port
}

PairingDecision decide_pairing(const std::string& standby_mac, std::optional<std::uint64_t> standby_group,
                               const std::string& primary_mac, std::optional<std::uint64_t> primary_group) {
    if (standby_group && primary_group) {
        if (*standby_group == *primary_group) {
            return {true, "group-id", "both carry group id " + format_group_id(*standby_group) +
                                          (standby_mac == primary_mac ? "" : " (their MACs differ)")};
        }
        return {false, "", "group ids differ: standby " + format_group_id(*standby_group) + ", primary " +
                               format_group_id(*primary_group)};
    }
    if (standby_group || primary_group) {
        return {false, "", std::string("only the ") + (standby_group ? "standby" : "primary") +
                               " carries a group id (" + format_group_id(standby_group ? *standby_group : *primary_group) +
                               ")"};
    }
    if (standby_mac == primary_mac) {
        return {true, "mac", "no group ids; same MAC " + standby_mac};
    }
    return {false, "", "no group ids and the MACs differ: " + standby_mac + ", " + primary_mac};
}

std::string format_group_id(std::uint64_t id) {
    char text[24];
    std::snprintf(text, sizeof text, "0x%016llx", static_cast<unsigned long long>(id));
    return text;
}

}  // namespace vnetct::groupid
