// The wire a guest's NICs plug into, built in a network namespace of its own:
//
//   netns <name>:  bridge <p>br  (learning off on every TAP port, so frames to
//                    |             the guest flood to all of its NICs, as an
//                    |             SR-IOV eswitch delivers to VF and standby)
//        +-- <p>t0, <p>t1, ...    one TAP per guest NIC
//        +-- <p>pbr == veth == <p>peer  (the wire's peer, with an address)
//
// <p> is a per-run device prefix. Everything lives inside the namespace, so
// deleting the namespace removes it all; destroy() is idempotent and also runs
// from the destructor.
#pragma once

#include <string>
#include <vector>

#include "vnetct/host_agent/errors.hpp"
#include "vnetct/host_agent/process.hpp"

namespace vnetct::host_agent {

struct TopologySpec {
    std::string netns;          // e.g. "vnetct-3fa2c1-1"
    std::string device_prefix;  // e.g. "v3fa2c1" (at most 9 characters)
    int taps = 2;
    std::string peer_address = "198.18.0.1/24";
};

class Topology {
  public:
    static HostResult<Topology> create(const TopologySpec& spec);

    Topology(Topology&& other) noexcept;
    Topology& operator=(Topology&& other) noexcept;
    Topology(const Topology&) = delete;
    Topology& operator=(const Topology&) = delete;
    ~Topology();

    [[nodiscard]] const std::string& netns() const { return m_spec.netns; }
    [[nodiscard]] std::string bridge() const { return m_spec.device_prefix + "br"; }
    [[nodiscard]] std::string tap(int index) const { return m_spec.device_prefix + "t" + std::to_string(index); }
    [[nodiscard]] std::vector<std::string> taps() const;
    [[nodiscard]] std::string peer_interface() const { return m_spec.device_prefix + "peer"; }
    [[nodiscard]] const std::string& peer_address() const { return m_spec.peer_address; }

    // `ip -s -d link` and `bridge fdb` inside the namespace, for the artifacts.
    [[nodiscard]] HostResult<std::string> describe() const;

    // Deletes the namespace and everything in it. Idempotent.
    HostResult<void> destroy();

  private:
    explicit Topology(TopologySpec spec) : m_spec(std::move(spec)) {}
    HostResult<void> build();

    TopologySpec m_spec;
    bool m_exists = false;
};

// Names of the network namespaces that start with `prefix`.
[[nodiscard]] std::vector<std::string> list_netns(const std::string& prefix);

// Deletes every network namespace whose name starts with `prefix` (the
// end-of-run sweep); returns the names it deleted.
HostResult<std::vector<std::string>> sweep_netns(const std::string& prefix);

// A socket created inside the namespace (the calling thread is not moved).
HostResult<int> open_socket_in_netns(const std::string& netns, int domain, int type, int protocol);

// A queue fd of the existing TAP `name` in the namespace (IFF_TAP | IFF_NO_PI |
// IFF_VNET_HDR), close-on-exec: what QEMU takes as `-netdev tap,fd=N`. Whoever
// holds a dup of it holds the same queue (the same open file description).
HostResult<int> open_tap_in_netns(const std::string& netns, const std::string& name);

}  // namespace vnetct::host_agent
