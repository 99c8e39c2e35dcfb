// FailoverHost: migration, source (FO-MIG-SRC-*) and target (FO-MIG-TGT-*).
#include "vnetct/reference_impl/failover_model.hpp"

namespace vnetct::reference_impl {
namespace {

nlohmann::json status(MigrationState state) {
    return {{"status", std::string{to_string(state)}}};
}

}  // namespace

// --- source -------------------------------------------------------------------

ModelResult<void> FailoverHost::migrate(Milliseconds now) {
    if (m_role != Role::Source) {
        return fail(ModelErrc::WrongRole, "migrate on the target");
    }
    if (auto guest = require_guest(); !guest) {
        return guest;
    }
    if (migration_in_progress()) {
        return fail(ModelErrc::MigrationInProgress, "migrate");
    }
    if (auto advanced = advance(now); !advanced) {
        return advanced;
    }
    m_migration = MigrationState::Setup;
    emit_event("MIGRATION", status(m_migration), "");
    // FO-MIG-SRC-01: every paired primary the guest holds must be released.
    bool requested = false;
    for (Device& device : m_devices) {
        if (!is_paired(device) || (device.state != PrimaryState::Plugged &&
                                   device.state != PrimaryState::UnplugRequested)) {
            continue;
        }
        device.state = PrimaryState::UnplugRequested;
        requested = true;
        if (!has(Mutation::NoUnplugPrimaryEvent)) {
            emit_event("UNPLUG_PRIMARY", {{"device-id", device.spec.id}}, "FO-MIG-SRC-01");
        }
    }
    if (!requested) {
        m_migration = MigrationState::Active;
        emit_event("MIGRATION", status(m_migration), "");
        return {};
    }
    m_migration = MigrationState::WaitUnplug;
    emit_event("MIGRATION", status(m_migration), "FO-MIG-SRC-02");
    if (m_options.unplug_timeout) {
        m_unplug_deadline = UnplugDeadline{now + *m_options.unplug_timeout,
                                           *m_options.unplug_timeout, false};
    }
    if (has(Mutation::LeaveWaitUnplugEarly)) {
        m_migration = MigrationState::Active;
        emit_event("MIGRATION", status(m_migration), "FO-MIG-SRC-03");
    }
    return {};
}

ModelResult<void> FailoverHost::guest_released(std::string_view primary_id, Milliseconds now) {
    if (auto guest = require_guest(); !guest) {
        return guest;
    }
    Device* primary = find(primary_id);
    if (primary == nullptr) {
        return fail(ModelErrc::UnknownDevice, std::string{primary_id});
    }
    if (primary->spec.failover_pair_id.empty()) {
        return fail(ModelErrc::NotAPrimary, std::string{primary_id});
    }
    if (primary->state != PrimaryState::UnplugRequested) {
        return fail(ModelErrc::NotUnplugRequested,
                    std::string{primary_id} + " is " + std::string{to_string(primary->state)});
    }
    if (auto advanced = advance(now); !advanced) {
        return advanced;
    }
    primary->state = PrimaryState::Released;
    emit(OutputKind::Unplugged, primary->spec.id, "FO-MIG-SRC-01", "released by the guest");
    const bool all_released = primaries_in(PrimaryState::UnplugRequested).empty();
    switch (m_migration) {
        case MigrationState::WaitUnplug:
            if (all_released) {  // FO-MIG-SRC-02
                m_unplug_deadline.reset();
                m_migration = MigrationState::Active;
                emit_event("MIGRATION", status(m_migration), "FO-MIG-SRC-02");
            }
            break;
        case MigrationState::Cancelling:
            if (all_released) {
                end_migration(MigrationState::Cancelled, "FO-MIG-SRC-04");
            }
            break;
        case MigrationState::Cancelled:
        case MigrationState::Failed:
            plug_back_released("FO-MIG-SRC-05");  // released after the end (FO-MIG-SRC-07)
            break;
        default:
            break;
    }
    return {};
}

ModelResult<void> FailoverHost::migrate_cancel(Milliseconds now) {
    if (m_role != Role::Source) {
        return fail(ModelErrc::WrongRole, "migrate_cancel on the target");
    }
    if (auto running = require_running_host(); !running) {
        return running;
    }
    if (auto advanced = advance(now); !advanced) {
        return advanced;
    }
    if (m_migration == MigrationState::WaitUnplug) {  // FO-MIG-SRC-04: wait for the release
        m_migration = MigrationState::Cancelling;
        emit_event("MIGRATION", status(m_migration), "FO-MIG-SRC-04");
        // FO-MIG-SRC-07: the host may bound that wait from the cancel; the earlier
        // deadline wins.
        if (const auto timeout = m_options.cancel_unplug_timeout) {
            const Milliseconds at = now + *timeout;
            if (!m_unplug_deadline || at < m_unplug_deadline->at) {
                m_unplug_deadline = UnplugDeadline{at, *timeout, true};
            }
        }
    } else if (m_migration == MigrationState::Active) {
        emit_event("MIGRATION", status(MigrationState::Cancelling), "");
        end_migration(MigrationState::Cancelled, "FO-MIG-SRC-05");
    }
    // Otherwise nothing to cancel; after completed that is FO-MIG-SRC-06.
    return {};
}

ModelResult<void> FailoverHost::migration_failed(Milliseconds now) {
    if (auto running = require_running_host(); !running) {
        return running;
    }
    if (!migration_in_progress()) {
        return fail(ModelErrc::NoMigrationInProgress, "migration_failed");
    }
    if (auto advanced = advance(now); !advanced) {
        return advanced;
    }
    end_migration(MigrationState::Failed, m_role == Role::Source ? "FO-MIG-SRC-05" : "");
    return {};
}

ModelResult<void> FailoverHost::transfer_done(Milliseconds now) {
    if (m_role != Role::Source) {
        return fail(ModelErrc::WrongRole, "transfer_done on the target");
    }
    if (auto running = require_running_host(); !running) {
        return running;
    }
    if (m_migration == MigrationState::Cancelling || m_migration == MigrationState::Cancelled ||
        m_migration == MigrationState::Failed) {
        return advance(now);  // the cancel or the failure won the race
    }
    if (m_migration != MigrationState::Active) {
        return fail(ModelErrc::TransferNotRunning, std::string{to_string(m_migration)});
    }
    if (auto advanced = advance(now); !advanced) {
        return advanced;
    }
    emit_event("STOP", nlohmann::json::object(), "");
    emit_event("MIGRATION", {{"status", "device"}}, "");
    m_migration = MigrationState::Completed;
    m_unplug_deadline.reset();
    m_guest_running = false;
    emit_event("MIGRATION", status(m_migration), "FO-MIG-SRC-03");
    return {};
}

// FO-MIG-SRC-07: past the host's unplug deadline (unplug_timeout from migrate(),
// cancel_unplug_timeout from the cancel, whichever ends first) a wait-unplug fails
// and a cancelling migration is cancelled; primaries still held stay UnplugRequested.
ModelResult<void> FailoverHost::tick(Milliseconds now) {
    if (auto advanced = advance(now); !advanced) {
        return advanced;
    }
    if (!m_unplug_deadline || now < m_unplug_deadline->at ||
        (m_migration != MigrationState::WaitUnplug && m_migration != MigrationState::Cancelling)) {
        return {};
    }
    const UnplugDeadline deadline = *m_unplug_deadline;
    for (const Device* primary : primaries_in(PrimaryState::UnplugRequested)) {
        emit(OutputKind::Warning, primary->spec.id, "FO-MIG-SRC-07",
             "migration: partially unplugged device on failure: primary '" + primary->spec.id +
                 "' not released by the guest within " +
                 std::to_string(deadline.timeout.count()) + " ms" +
                 (deadline.from_cancel ? " of the cancel" : ""));
    }
    end_migration(m_migration == MigrationState::WaitUnplug ? MigrationState::Failed
                                                            : MigrationState::Cancelled,
                  "FO-MIG-SRC-07");
    return {};
}

std::vector<FailoverHost::Device*> FailoverHost::primaries_in(PrimaryState state) {
    std::vector<Device*> primaries;
    for (Device& device : m_devices) {
        if (!device.spec.failover_pair_id.empty() && device.state == state) {
            primaries.push_back(&device);
        }
    }
    return primaries;
}

void FailoverHost::end_migration(MigrationState state, const std::string& rule) {
    m_migration = state;
    m_unplug_deadline.reset();
    emit_event("MIGRATION", status(state), rule);
    if (m_role == Role::Source) {
        plug_back_released(rule);
    }
}

// FO-MIG-SRC-04/05: a released primary returns to the guest on the source.
void FailoverHost::plug_back_released(const std::string& rule) {
    if (has(Mutation::ForgetReplugAfterCancel)) {
        return;
    }
    for (Device* primary : primaries_in(PrimaryState::Released)) {
        primary->state = PrimaryState::Plugged;
        emit(OutputKind::Plugged, primary->spec.id, rule, "plugged back on the source");
    }
}

// --- target -------------------------------------------------------------------

// FO-MIG-TGT-01: the target's primaries stay hidden (start() plugs nothing and the
// guest is not running) until the state is loaded.
ModelResult<void> FailoverHost::incoming(Milliseconds now) {
    if (m_role != Role::Target) {
        return fail(ModelErrc::WrongRole, "incoming on the source");
    }
    if (auto running = require_running_host(); !running) {
        return running;
    }
    if (m_migration != MigrationState::None) {
        return fail(ModelErrc::MigrationInProgress, "incoming");
    }
    if (auto advanced = advance(now); !advanced) {
        return advanced;
    }
    m_migration = MigrationState::Setup;
    emit_event("MIGRATION", status(m_migration), "");
    m_migration = MigrationState::Active;
    emit_event("MIGRATION", status(m_migration), "FO-MIG-TGT-01");
    return {};
}

// FO-MIG-TGT-02: negotiation replayed from the loaded state, then RESUME.
ModelResult<void> FailoverHost::incoming_loaded(std::span<const std::string> negotiated_standby_ids,
                                                Milliseconds now) {
    if (m_role != Role::Target) {
        return fail(ModelErrc::WrongRole, "incoming_loaded on the source");
    }
    if (auto running = require_running_host(); !running) {
        return running;
    }
    if (m_migration != MigrationState::Active) {
        return fail(ModelErrc::NoMigrationInProgress, "incoming_loaded");
    }
    for (const std::string& id : negotiated_standby_ids) {
        const Device* device = find(id);
        if (device == nullptr) {
            return fail(ModelErrc::UnknownDevice, id);
        }
        if (!device->spec.failover) {
            return fail(ModelErrc::FeatureNotOffered, id);
        }
    }
    if (auto advanced = advance(now); !advanced) {
        return advanced;
    }
    for (const std::string& id : negotiated_standby_ids) {
        negotiate(*find(id), "FO-MIG-TGT-02", !has(Mutation::NoReplugOnTarget));
    }
    m_guest_running = true;
    emit_event("RESUME", nlohmann::json::object(), "FO-MIG-TGT-02");
    m_migration = MigrationState::Completed;
    emit_event("MIGRATION", status(m_migration), "FO-MIG-TGT-02");
    return {};
}

}  // namespace vnetct::reference_impl
