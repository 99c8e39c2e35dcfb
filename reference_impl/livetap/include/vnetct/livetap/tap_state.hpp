// The TAP backend state that travels with the queue fds (LT-STATE-01), read
// from the open fds, and its validation against the fds on arrival
// (LT-STATE-03).
//
// Everything but the offload bits is read back through the fd (TUNGETIFF,
// TUNGETVNETHDRSZ, TUNGETVNETLE, TUNGETSNDBUF, TUNGETDEVNETNS + SIOCGIFINDEX);
// TUNSETOFFLOAD has no getter, so the owner states the bits it set and they
// travel in the state as given.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "vnetct/livetap/errors.hpp"
#include "vnetct/livetap/handoff_stamps.hpp"
#include "vnetct/livetap/unique_fd.hpp"

namespace vnetct::livetap {

// Every queue travels in one SCM_RIGHTS message, which carries at most
// SCM_MAX_FD (253) fds; the kernel's MAX_TAP_QUEUES (256) is above it.
inline constexpr std::size_t max_queues = 253;

struct TapState {
    std::string name;                // interface name (1..15 characters)
    std::uint32_t tun_flags = 0;     // TUNGETIFF ifr_flags (IFF_TAP, IFF_NO_PI, IFF_VNET_HDR, ...)
    std::int32_t ifindex = 0;        // in the device's network namespace
    std::uint64_t netns_inode = 0;   // the device's network namespace; 0: unknown to the reader
    std::int32_t vnet_hdr_size = 0;  // TUNGETVNETHDRSZ
    bool vnet_le = false;            // TUNGETVNETLE
    std::int32_t sndbuf = 0;         // TUNGETSNDBUF
    std::uint32_t offloads = 0;      // TUN_F_* as set with TUNSETOFFLOAD (no getter)
    std::uint16_t queue_count = 0;   // number of queue fds that travel with the state

    friend bool operator==(const TapState&, const TapState&) = default;
};

// "name=vt0 flags=0x5002 ifindex=4 ..." for messages and logs.
[[nodiscard]] std::string describe(const TapState& state);

// Reads the state from the queue fds of one TAP (all attached queues of the
// device, in queue order). `offloads` are the TUN_F_* bits the owner set.
// StateMismatch when the fds are not queues of one device; Io when a read fails.
[[nodiscard]] LivetapResult<TapState> capture_tap_state(std::span<const int> queue_fds, std::uint32_t offloads);

// The target's check on arrival: the fds are `state.queue_count` distinct,
// attached queues of the device the state describes, with the same flags,
// ifindex, namespace, vnet header size and endianness and sndbuf. Only reads.
// FdCountMismatch, or StateMismatch naming the field, the state's value and
// the fd's value. `stamps` (if given) gets queues_read, distinct_checked,
// identity_checked.
[[nodiscard]] LivetapResult<void> validate_tap_state(const TapState& state, std::span<const int> queue_fds,
                                                     HandOffStamps* stamps = nullptr);

// Opens what validate_tap_state keeps for the calling thread (its network
// namespace, to return to after a look into the device's), so that its first
// validation does not pay for it: call it on the thread that will validate,
// before the hand-off. Optional. A thread that validates must not move to
// another network namespace afterwards.
void prepare_validation();

// What the source (the only side that ever opens /dev/net/tun) creates.
struct TapSpec {
    std::string netns;  // name under /run/netns; empty: the caller's namespace
    std::string name;
    int queues = 1;  // > 1 sets IFF_MULTI_QUEUE
    bool multi_queue = false;  // IFF_MULTI_QUEUE also with one queue (so it can be detached, TUNSETQUEUE)
    bool vnet_hdr = true;
    std::int32_t vnet_hdr_size = 12;  // with vnet_hdr: 10 or 12 (mergeable buffers)
    std::uint32_t offloads = 0;       // TUN_F_* for TUNSETOFFLOAD
    std::int32_t sndbuf = 0;          // 0: leave the kernel's default
};

struct OpenedTap {
    std::vector<UniqueFd> queues;
    TapState state;
};

// Opens /dev/net/tun once per queue inside `spec.netns` (on a throwaway
// thread; the caller stays where it is), creates or attaches the TAP and
// configures it, then captures its state. The device is not persistent: it
// lives as long as one of its queue fds. The link is left down.
[[nodiscard]] LivetapResult<OpenedTap> open_tap(const TapSpec& spec);

// The fds as plain ints, for the span-taking functions.
[[nodiscard]] std::vector<int> raw_fds(const std::vector<UniqueFd>& fds);

}  // namespace vnetct::livetap
