// A VF's MAC, VLAN, trust and spoof check, set through its PF by rtnetlink
// (RTM_SETLINK with IFLA_VFINFO_LIST), using iproute2's `ip link set dev PF
// vf N ...` and read back with `ip -j -d link show dev PF` (IFLA_VFINFO_LIST
// in RTM_GETLINK). Optionally inside a network namespace (tests).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "vnetct/sriov/errors.hpp"

namespace vnetct::sriov {

// What the PF reports for one VF.
struct VfLinkState {
    int vf = 0;
    std::string mac;                // lower case; 00:00:00:00:00:00 when unset
    int vlan = 0;                   // 0: no VLAN
    int qos = 0;
    std::optional<bool> trust;      // absent: the driver does not report it
    std::optional<bool> spoofchk;
};

// What to set; absent fields are left as they are.
struct VfSettings {
    std::optional<std::string> mac;
    std::optional<int> vlan;  // 0 clears
    int qos = 0;
    std::optional<bool> trust;
    std::optional<bool> spoofchk;
};

class VfLink {
  public:
    explicit VfLink(std::string netns = {}) : m_netns(std::move(netns)) {}
    virtual ~VfLink() = default;
    VfLink(const VfLink&) = default;
    VfLink& operator=(const VfLink&) = default;

    // Every VF the PF reports. A netdev without VFs reports none.
    [[nodiscard]] virtual SriovResult<std::vector<VfLinkState>> read(const std::string& pf) const;
    [[nodiscard]] SriovResult<VfLinkState> read(const std::string& pf, int vf) const;
    // One `ip link set` per setting (a driver may support some and not others,
    // and the error then names the one it refused). Virtual, like read(), so
    // that tests can stand in for a PF driver with VF support.
    virtual SriovResult<void> apply(const std::string& pf, int vf, const VfSettings& settings) const;

  private:
    [[nodiscard]] SriovResult<std::string> ip(const std::vector<std::string>& arguments) const;
    std::string m_netns;
};

// The VFs in `ip -j -d link show` output (its "vfinfo_list").
[[nodiscard]] SriovResult<std::vector<VfLinkState>> parse_vf_list(const std::string& ip_json, const std::string& pf);

// "52:54:00:6f:55:cc": six colon-separated hex octets; lower-cased on success.
[[nodiscard]] std::optional<std::string> normalize_mac(const std::string& mac);

}  // namespace vnetct::sriov
