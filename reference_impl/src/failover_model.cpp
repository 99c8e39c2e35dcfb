// FailoverHost: construction, time, queries, output queue and lookups.
#include "vnetct/reference_impl/failover_model.hpp"

#include <array>
#include <utility>

namespace vnetct::reference_impl {
namespace {

#define VNETCT_MUTATION_ENTRY(name, text) Mutation::name,
constexpr std::array kAllMutations{VNETCT_FAILOVER_MUTATIONS(VNETCT_MUTATION_ENTRY)};
#undef VNETCT_MUTATION_ENTRY

}  // namespace

Mutations::Mutations(std::initializer_list<Mutation> mutations) {
    for (const Mutation mutation : mutations) {
        m_bits.set(static_cast<std::size_t>(mutation));
    }
}

void Mutations::add(Mutation mutation) { m_bits.set(static_cast<std::size_t>(mutation)); }

bool Mutations::has(Mutation mutation) const {
    return m_bits.test(static_cast<std::size_t>(mutation));
}

std::span<const Mutation> all_mutations() { return kAllMutations; }

FailoverHost::FailoverHost(Role role, ModelOptions options)
    : m_role(role), m_options(std::move(options)) {}

std::vector<Output> FailoverHost::take_outputs() { return std::exchange(m_outputs, {}); }

ModelResult<PrimaryState> FailoverHost::primary_state(std::string_view id) const {
    const Device* device = find(id);
    if (device == nullptr) {
        return fail(ModelErrc::UnknownDevice, std::string{id});
    }
    if (device->spec.failover_pair_id.empty()) {
        return fail(ModelErrc::NotAPrimary, std::string{id});
    }
    return device->state;
}

std::vector<std::string> FailoverHost::visible_devices() const {
    std::vector<std::string> ids;
    for (const Device& device : m_devices) {
        if (device.state == PrimaryState::Plugged ||
            device.state == PrimaryState::UnplugRequested) {
            ids.push_back(device.spec.id);
        }
    }
    return ids;
}

ModelResult<void> FailoverHost::advance(Milliseconds now) {
    if (now < m_now) {
        return fail(ModelErrc::TimeWentBackwards, std::to_string(now.count()) + " ms after " +
                                                      std::to_string(m_now.count()) + " ms");
    }
    m_now = now;
    return {};
}

ModelResult<void> FailoverHost::require_running_host() const {
    if (!m_started) {
        return fail(ModelErrc::NotStarted);
    }
    if (m_refused) {
        return fail(ModelErrc::RefusedToStart);
    }
    return {};
}

ModelResult<void> FailoverHost::require_guest() const {
    if (auto running = require_running_host(); !running) {
        return running;
    }
    if (!m_guest_running) {
        return fail(ModelErrc::GuestNotRunning);
    }
    return {};
}

bool FailoverHost::migration_in_progress() const {
    return m_migration == MigrationState::Setup || m_migration == MigrationState::WaitUnplug ||
           m_migration == MigrationState::Active || m_migration == MigrationState::Cancelling;
}

FailoverHost::Device* FailoverHost::find(std::string_view id) {
    for (Device& device : m_devices) {
        if (!id.empty() && device.spec.id == id) {
            return &device;
        }
    }
    return nullptr;
}

const FailoverHost::Device* FailoverHost::find(std::string_view id) const {
    return const_cast<FailoverHost*>(this)->find(id);
}

FailoverHost::Device* FailoverHost::standby_named(std::string_view id) {
    Device* device = find(id);
    return device != nullptr && device->spec.failover ? device : nullptr;
}

// The first primary (in add order) naming this standby.
FailoverHost::Device* FailoverHost::primary_of(const Device& standby) {
    for (Device& device : m_devices) {
        if (device.spec.failover_pair_id == standby.spec.id) {
            return &device;
        }
    }
    return nullptr;
}

bool FailoverHost::is_paired(const Device& primary) {
    if (primary.spec.failover_pair_id.empty()) {
        return false;
    }
    const Device* standby = standby_named(primary.spec.failover_pair_id);
    return standby != nullptr && primary_of(*standby) == &primary;
}

void FailoverHost::emit_event(std::string name, nlohmann::json data, std::string rule) {
    m_outputs.push_back(
        Output{OutputKind::QmpEvent, std::move(name), std::move(data), std::move(rule), "", m_now});
}

void FailoverHost::emit(OutputKind kind, std::string name, std::string rule, std::string text) {
    m_outputs.push_back(Output{kind, std::move(name), nlohmann::json::object(), std::move(rule),
                               std::move(text), m_now});
}

}  // namespace vnetct::reference_impl
