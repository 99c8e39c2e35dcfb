// The TEAM-* rules, the failover model's QEMU-side placement rules applied to
// the XML's PCI addresses, and the argv fragment libvirt would produce.
#include <cstdio>
#include <map>

#include "vnetct/teaming/teaming.hpp"

namespace vnetct::teaming {
namespace {

constexpr const char* kUserAliasPrefix = "ua-";

bool is_virtio(const std::string& model) {
    return model == "virtio" || model == "virtio-transitional" || model == "virtio-non-transitional";
}

bool is_q35(const std::string& machine) { return machine.find("q35") != std::string::npos; }

std::string hex(unsigned value, int width) {
    char buffer[16];
    std::snprintf(buffer, sizeof buffer, "%0*x", width, value);
    return buffer;
}

// The controller whose index is `bus`; none for an undeclared bus.
const Controller* controller_of(const Domain& domain, unsigned bus) {
    for (const Controller& controller : domain.controllers) {
        if (controller.index == bus) {
            return &controller;
        }
    }
    return nullptr;
}

std::string bus_id(const Domain& domain, unsigned bus) {
    if (bus == 0) {
        return is_q35(domain.machine) ? "pcie.0" : "pci.0";
    }
    return "pci." + std::to_string(bus);
}

void placement_options(const Domain& domain, const std::optional<PciAddress>& address, std::string& options) {
    if (!address) {
        return;  // libvirt assigns an address (a pcie-root-port of its own on q35)
    }
    options += ",bus=" + bus_id(domain, address->bus) + ",addr=0x" + hex(address->slot, 1);
    if (address->function != 0) {
        options += "." + hex(address->function, 1);
    }
    if (address->multifunction) {
        options += ",multifunction=on";
    }
}

class Checker {
  public:
    explicit Checker(const Domain& domain) : m_domain(domain) {}

    Verdict run() {
        std::map<std::string, const Interface*> persistent_by_alias;
        for (const Interface& nic : m_domain.interfaces) {
            if (nic.teaming_type && *nic.teaming_type == "persistent" && !nic.alias.empty()) {
                persistent_by_alias.emplace(nic.alias, &nic);
            }
        }
        std::map<std::string, int> transients_per_persistent;
        int hostdev_counter = 0;
        for (const Interface& nic : m_domain.interfaces) {
            const bool hostdev = nic.type == "hostdev";
            if (!nic.teaming_type) {
                hostdev_counter += hostdev ? 1 : 0;
                continue;
            }
            const std::string& type = *nic.teaming_type;
            if (type == "persistent") {
                check_persistent(nic);
            } else if (type == "transient") {
                check_transient(nic, persistent_by_alias, transients_per_persistent, hostdev_counter);
            } else {
                add("TEAM-01", nic.teaming_line, "teaming", "type",
                    "teaming type '" + type + "'; expected 'persistent' or 'transient'");
            }
            hostdev_counter += hostdev ? 1 : 0;
        }
        return std::move(m_verdict);
    }

  private:
    void add(const char* rule, int line, const char* element, const char* attribute, std::string message) {
        m_verdict.violations.push_back(Violation{rule, line, element, attribute, std::move(message)});
    }

    void check_persistent(const Interface& nic) {
        if (!is_virtio(nic.model)) {
            add("TEAM-02", nic.line, "model", "type",
                "a persistent teaming interface must be <model type='virtio'/>, not '" +
                    (nic.model.empty() ? std::string("(none: libvirt's default for the machine)") : nic.model) + "'");
        }
        if (nic.teaming_persistent) {
            add("TEAM-04", nic.teaming_line, "teaming", "persistent",
                "the persistent attribute is not allowed with teaming type 'persistent'");
        }
        std::string options = "virtio-net-pci,netdev=host" + (nic.alias.empty() ? "net" : nic.alias);
        if (!nic.alias.empty()) {
            options += ",id=" + nic.alias;
        }
        if (!nic.mac.empty()) {
            options += ",mac=" + nic.mac;
        }
        placement_options(m_domain, nic.address, options);
        options += ",failover=on";
        m_verdict.argv.insert(m_verdict.argv.end(), {"-device", options});
    }

    void check_transient(const Interface& nic, const std::map<std::string, const Interface*>& persistent_by_alias,
                         std::map<std::string, int>& transients_per_persistent, int hostdev_index) {
        if (nic.type != "hostdev") {
            add("TEAM-03", nic.line, "interface", "type",
                "a transient teaming interface must be type='hostdev', not '" + nic.type + "'");
        }
        const Interface* standby = nullptr;
        if (!nic.teaming_persistent) {
            add("TEAM-04", nic.teaming_line, "teaming", "persistent",
                "the persistent attribute is required with teaming type 'transient'");
        } else {
            const std::string& named = *nic.teaming_persistent;
            auto found = persistent_by_alias.find(named);
            if (found == persistent_by_alias.end()) {
                std::string why = "names '" + named + "', which is not the alias of an interface with teaming "
                                                      "type 'persistent'";
                if (named.rfind(kUserAliasPrefix, 0) != 0) {
                    why += " (libvirt keeps only user aliases starting with 'ua-')";
                }
                add("TEAM-05", nic.teaming_line, "teaming", "persistent", why);
            } else {
                standby = found->second;
                if (named.rfind(kUserAliasPrefix, 0) != 0) {
                    add("TEAM-05", standby->alias_line, "alias", "name",
                        "the alias '" + named + "' does not start with 'ua-': libvirt drops such an alias from "
                        "a defined domain, so nothing can name it");
                }
                if (++transients_per_persistent[named] > 1) {
                    add("TEAM-06", nic.teaming_line, "teaming", "persistent",
                        "'" + named + "' already has a transient interface; a standby takes one primary "
                        "(FO-CFG-09)");
                }
            }
        }
        if (standby != nullptr && (nic.mac.empty() || standby->mac.empty() || nic.mac != standby->mac)) {
            add("TEAM-07", nic.mac_line ? nic.mac_line : nic.line, nic.mac_line ? "mac" : "interface",
                nic.mac_line ? "address" : "",
                nic.mac.empty() || standby->mac.empty()
                    ? "both interfaces need an explicit <mac address=...>, the same one (libvirt generates a "
                      "different MAC for each interface that has none)"
                    : "MAC " + nic.mac + " differs from its persistent interface's " + standby->mac);
        }
        check_primary_placement(nic, standby);

        std::string options = "vfio-pci";
        if (nic.source_address) {
            const PciAddress& vf = *nic.source_address;
            options += ",host=" + hex(vf.domain, 4) + ":" + hex(vf.bus, 2) + ":" + hex(vf.slot, 2) + "." +
                       hex(vf.function, 1);
        }
        options += ",id=" + (nic.alias.empty() ? "hostdev" + std::to_string(hostdev_index) : nic.alias);
        placement_options(m_domain, nic.address, options);
        if (nic.teaming_persistent) {
            options += ",failover_pair_id=" + *nic.teaming_persistent;
        }
        m_verdict.argv.insert(m_verdict.argv.end(), {"-device", options});
    }

    // The failover model's QEMU-side rules where the XML fixes the primary's place.
    void check_primary_placement(const Interface& nic, const Interface* standby) {
        if (!m_domain.machine.empty() && !is_q35(m_domain.machine)) {
            add("FO-CFG-06", nic.line, "type", "machine",
                "machine '" + m_domain.machine + "' has no PCI Express bus; a primary must be on PCIe (use q35)");
        }
        if (!nic.address) {
            return;  // libvirt places it: a pcie-root-port of its own on q35
        }
        const PciAddress& at = *nic.address;
        if (at.function != 0 || at.multifunction) {
            add("FO-CFG-03", at.line, "address", at.function != 0 ? "function" : "multifunction",
                "the primary must be alone in its slot: function 0, not multifunction");
        }
        const Controller* bus = controller_of(m_domain, at.bus);
        const std::string model = bus ? bus->model : (at.bus == 0 ? "pcie-root" : "");
        if (at.bus == 0 || model == "pcie-root" || model == "pcie-expander-bus" || model == "pci-root") {
            add("FO-CFG-02", at.line, "address", "bus",
                "bus " + std::to_string(at.bus) + " is a root bus (" + (model.empty() ? "pcie-root" : model) +
                    "), not hot-pluggable; put the primary on a pcie-root-port");
        } else if (model == "pci-bridge" || model == "pcie-to-pci-bridge" || model == "dmi-to-pci-bridge") {
            add("FO-CFG-06", at.line, "address", "bus",
                "bus " + std::to_string(at.bus) + " is a " + model + " (conventional PCI); a primary must be on "
                "PCI Express (a pcie-root-port)");
        } else if (model.empty()) {
            add("FO-CFG-02", at.line, "address", "bus",
                "bus " + std::to_string(at.bus) + " is not declared by any <controller type='pci' index='" +
                    std::to_string(at.bus) + "'>");
        }
        if (standby != nullptr && standby->address && standby->address->bus == at.bus &&
            standby->address->slot == at.slot && standby->address->domain == at.domain) {
            add("FO-CFG-07", at.line, "address", "slot",
                "the primary is in its standby's PCI slot (bus " + std::to_string(at.bus) + " slot " +
                    std::to_string(at.slot) + ")");
        }
    }

    const Domain& m_domain;
    Verdict m_verdict;
};

}  // namespace

Verdict check(const Domain& domain) { return Checker(domain).run(); }

}  // namespace vnetct::teaming
