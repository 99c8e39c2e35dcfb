// The PCI config-space capability walker (failover-group-id, FO-GRP-*): a
// config-space image as read from a guest's sysfs or a host's device is
// untrusted (a loop in the list, pointers into the header or past the end).
// Invariants: the walk ends, stays inside the image and within
// max_capabilities; an image we encode reads back its group id.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>

#include "fuzz_support.hpp"
#include "vnetct/groupid/groupid.hpp"

using namespace vnetct::groupid;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::uint8_t> config(data, size);
    vnetct::fuzz::maybe_seeded_bug(config);
    if (auto capabilities = walk_capabilities(config)) {
        VNETCT_FUZZ_CHECK(capabilities->size() <= max_capabilities);
        for (const Capability& capability : *capabilities) {
            VNETCT_FUZZ_CHECK(capability.offset + 1u < config.size());
            VNETCT_FUZZ_CHECK(config[capability.offset] == capability.id);
        }
    }
    (void)nic_group_id(config);
    (void)bridge_group_id(config);

    // Round trip: the first 8 bytes as a group id, through our own images.
    if (size >= 8) {
        std::uint64_t id = 0;
        std::memcpy(&id, data, sizeof id);
        auto nic = nic_group_id(encode_nic_config(id));
        VNETCT_FUZZ_CHECK(nic.has_value() && *nic == std::optional<std::uint64_t>(id));
        auto bridge = bridge_group_id(encode_bridge_config(id));
        VNETCT_FUZZ_CHECK(bridge.has_value() && *bridge == std::optional<std::uint64_t>(id));
    }
    return 0;
}
