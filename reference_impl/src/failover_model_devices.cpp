// FailoverHost: adding and removing devices, and the configuration rules
// (FO-CFG-*). Messages are QEMU 10's where it has one.
#include "vnetct/reference_impl/failover_model.hpp"

#include <utility>

namespace vnetct::reference_impl {

ModelResult<void> FailoverHost::cold_plug(DeviceSpec spec) {
    if (m_started) {
        return fail(ModelErrc::AlreadyStarted, "cold_plug " + spec.id);
    }
    for (const DeviceSpec& other : m_cold_plugged) {
        if (!spec.id.empty() && other.id == spec.id) {
            return fail(ModelErrc::DuplicateId, spec.id);
        }
    }
    m_cold_plugged.push_back(std::move(spec));
    return {};
}

ModelResult<void> FailoverHost::start(Milliseconds now) {
    if (m_started) {
        return fail(ModelErrc::AlreadyStarted);
    }
    if (auto advanced = advance(now); !advanced) {
        return advanced;
    }
    m_started = true;
    std::vector<DeviceSpec> specs = std::exchange(m_cold_plugged, {});
    for (DeviceSpec& spec : specs) {
        std::string id = spec.id;
        if (auto refusal = add_device(std::move(spec), false)) {
            // Like QEMU: the first bad -device ends the start.
            emit(OutputKind::StartError, std::move(id), refusal->rule, refusal->text);
            m_refused = true;
            m_devices.clear();
            return {};
        }
    }
    // The source boots its guest; the target waits for the incoming state.
    m_guest_running = m_role == Role::Source;
    if (has(Mutation::NegotiatedBeforeAck)) {
        for (Device& device : m_devices) {
            if (device.spec.failover && primary_of(device) != nullptr) {
                negotiate(device, "FO-NEG-02", true);
            }
        }
    }
    return {};
}

ModelResult<void> FailoverHost::hot_plug(DeviceSpec spec, Milliseconds now) {
    if (auto running = require_running_host(); !running) {
        return running;
    }
    if (!spec.id.empty() && find(spec.id) != nullptr) {
        return fail(ModelErrc::DuplicateId, spec.id);
    }
    if (auto advanced = advance(now); !advanced) {
        return advanced;
    }
    std::string id = spec.id;
    if (auto refusal = add_device(std::move(spec), true)) {
        emit(OutputKind::CommandError, std::move(id), refusal->rule, refusal->text);
    }
    return {};
}

// A device the guest can see leaves with DEVICE_DELETED; a hidden, refused or
// released primary just disappears from the configuration.
ModelResult<void> FailoverHost::device_del(std::string_view id, Milliseconds now) {
    if (auto running = require_running_host(); !running) {
        return running;
    }
    if (migration_in_progress()) {
        return fail(ModelErrc::MigrationInProgress, "device_del " + std::string{id});
    }
    Device* device = find(id);
    if (device == nullptr) {
        return fail(ModelErrc::UnknownDevice, std::string{id});
    }
    if (auto advanced = advance(now); !advanced) {
        return advanced;
    }
    if (device->state == PrimaryState::Plugged || device->state == PrimaryState::UnplugRequested) {
        emit(OutputKind::Unplugged, device->spec.id, "", "device_del");
        emit_event("DEVICE_DELETED", {{"device", device->spec.id},
                                      {"path", "/machine/peripheral/" + device->spec.id}},
                   "");
    }
    std::erase_if(m_devices, [device](const Device& other) { return &other == device; });
    return {};
}

// Adds the device (FO-CFG-08 decides whether a primary is hidden) or says why the
// host refuses it. `hot`: device_add (no hot plug onto the root bus; Plugged is
// emitted for a device the guest gets at once).
std::optional<FailoverHost::Refusal> FailoverHost::add_device(DeviceSpec spec, bool hot) {
    const bool primary = !spec.failover_pair_id.empty();
    Device* standby = primary ? standby_named(spec.failover_pair_id) : nullptr;
    if (primary && spec.id.empty()) {
        return Refusal{"FO-CFG-01", "Device with failover_pair_id needs to have id"};
    }
    if (hot && spec.bus_kind == BusKind::RootBus) {
        return Refusal{primary ? "FO-CFG-02" : "",
                       "Bus '" + spec.bus + "' does not support hotplugging"};
    }
    if (standby != nullptr) {
        if (const Device* other = primary_of(*standby)) {
            return Refusal{"FO-CFG-09", "Cannot attach more than one primary device to '" +
                                            standby->spec.id + "': '" + other->spec.id +
                                            "' and '" + spec.id + "'"};
        }
        if (!standby->standby_acked) {
            if (spec.bus_kind == BusKind::RootBus && !m_options.root_bus_primary_refused_at_plug) {
                return Refusal{"FO-CFG-02", "Bus '" + spec.bus + "' does not support hotplugging"};
            }
            m_devices.push_back(Device{std::move(spec), PrimaryState::Hidden, false});
            return std::nullopt;
        }
    }
    if (primary) {
        if (auto refusal = realize_refusal(spec, standby)) {
            return refusal;
        }
    }
    // An ordinary device, a primary whose standby does not exist yet (FO-CFG-08),
    // or a primary whose standby has already negotiated (FO-NEG-02).
    const std::string rule = !primary ? "" : standby != nullptr ? "FO-NEG-02" : "FO-CFG-08";
    m_devices.push_back(Device{std::move(spec), PrimaryState::Plugged, false});
    if (hot) {
        emit(OutputKind::Plugged, m_devices.back().spec.id, rule, "device_add");
    }
    return std::nullopt;
}

// The checks QEMU makes when it realizes a primary: at once for a visible one,
// after the negotiation for a hidden one.
std::optional<FailoverHost::Refusal> FailoverHost::realize_refusal(const DeviceSpec& spec,
                                                                   const Device* standby) const {
    if (standby != nullptr && !spec.slot.empty() && spec.bus == standby->spec.bus &&
        spec.slot == standby->spec.slot) {
        return Refusal{"FO-CFG-07", "PCI: slot " + spec.slot + " function 0 not available for " +
                                        spec.driver + ", in use by " + standby->spec.driver};
    }
    if (spec.bus_kind == BusKind::ConventionalPci) {
        return Refusal{"FO-CFG-06", "failover primary device must be on PCIExpress bus"};
    }
    if (!spec.network_class) {
        return Refusal{"FO-CFG-06", "failover primary device is not an Ethernet device"};
    }
    if (spec.multifunction) {
        return Refusal{"FO-CFG-03", "failover: primary device must be in its own PCI slot"};
    }
    return std::nullopt;
}

}  // namespace vnetct::reference_impl
