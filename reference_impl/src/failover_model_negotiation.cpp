// FailoverHost: feature negotiation (FO-NEG-*) and guest reset.
#include "vnetct/reference_impl/failover_model.hpp"

namespace vnetct::reference_impl {

ModelResult<void> FailoverHost::guest_ack_features(std::string_view standby_id, bool standby_bit,
                                                   Milliseconds now) {
    if (auto guest = require_guest(); !guest) {
        return guest;
    }
    Device* device = find(standby_id);
    if (device == nullptr) {
        return fail(ModelErrc::UnknownDevice, std::string{standby_id});
    }
    if (standby_bit && !device->spec.failover) {
        return fail(ModelErrc::FeatureNotOffered, std::string{standby_id});  // FO-CFG-05
    }
    if (auto advanced = advance(now); !advanced) {
        return advanced;
    }
    if (standby_bit) {
        negotiate(*device, "FO-NEG-02", true);
        return {};
    }
    // FO-NEG-03: no ack, no primary (unless the host is mutated to plug anyway).
    if (device->spec.failover && has(Mutation::PlugPrimaryWithoutStandbyAck)) {
        Device* primary = primary_of(*device);
        if (primary != nullptr && primary->state == PrimaryState::Hidden) {
            plug_primary(*primary, "FO-NEG-03");
        }
    }
    return {};
}

// FO-NEG-04: every paired primary is hidden again until the next ack.
ModelResult<void> FailoverHost::guest_reset(Milliseconds now) {
    if (auto guest = require_guest(); !guest) {
        return guest;
    }
    if (migration_in_progress()) {
        return fail(ModelErrc::MigrationInProgress, "guest reset");
    }
    if (auto advanced = advance(now); !advanced) {
        return advanced;
    }
    for (Device& device : m_devices) {
        device.standby_acked = false;
    }
    for (Device& device : m_devices) {
        if (!is_paired(device) || device.state == PrimaryState::Hidden ||
            device.state == PrimaryState::Refused) {
            continue;
        }
        if (device.state == PrimaryState::Plugged ||
            device.state == PrimaryState::UnplugRequested) {
            emit(OutputKind::Unplugged, device.spec.id, "FO-NEG-04", "guest reset");
        }
        device.state = PrimaryState::Hidden;
    }
    return {};
}

// The standby acked bit 62: FAILOVER_NEGOTIATED names the standby, then its hidden
// primary is plugged (FO-NEG-02). Without a primary the host warns (FO-CFG-04).
void FailoverHost::negotiate(Device& standby, const std::string& rule, bool plug) {
    emit_event("FAILOVER_NEGOTIATED", {{"device-id", standby.spec.id}}, rule);
    standby.standby_acked = true;
    Device* primary = primary_of(standby);
    if (primary == nullptr) {
        emit(OutputKind::Warning, standby.spec.id, "FO-CFG-04", "Primary device not found");
        return;
    }
    if (plug && primary->state == PrimaryState::Hidden) {
        plug_primary(*primary, rule);
    }
}

// Realizes a hidden primary; QEMU's realize checks may refuse it now (FO-CFG-03,
// FO-CFG-06, FO-CFG-07): a warning, and the guest never gets it.
void FailoverHost::plug_primary(Device& primary, const std::string& rule) {
    std::optional<Refusal> refusal;
    if (m_options.root_bus_primary_refused_at_plug && primary.spec.bus_kind == BusKind::RootBus) {
        refusal = Refusal{"FO-CFG-02", "Bus '" + primary.spec.bus + "' does not support hotplugging"};
    } else {
        refusal = realize_refusal(primary.spec, standby_named(primary.spec.failover_pair_id));
    }
    if (refusal) {
        emit(OutputKind::Warning, primary.spec.id, refusal->rule, refusal->text);
        primary.state = PrimaryState::Refused;
        return;
    }
    primary.state = PrimaryState::Plugged;
    emit(OutputKind::Plugged, primary.spec.id, rule, "primary plugged");
}

}  // namespace vnetct::reference_impl
