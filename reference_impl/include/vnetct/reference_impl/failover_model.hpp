// The host side of virtio-net failover as a pure state machine: the executable
// form of the FO-* rules (rules.hpp). No I/O, deterministic, time injected: every
// input takes `now` (milliseconds since an epoch the caller chooses; it must not go
// backwards). Inputs return errors as values when the model cannot apply them; the
// host's observable behaviour (QMP events, warnings, refusals, plugs and unplugs)
// queues up as Outputs, drained by take_outputs(), each naming the rule it realises.
//
// Decisions this model makes where QEMU 10 was not measured (see FO-CFG-08, FO-NEG-04,
// FO-MIG-SRC-07 for the rules they became):
// - Hiding is decided when a primary is added (cold-plug order = command-line order):
//   a primary whose standby does not exist yet is an ordinary visible device; when the
//   standby is added later it becomes that standby's primary (paired: unplugged on
//   migration), and the standby's negotiation neither plugs it again nor warns.
// - A guest reset hides every paired primary again (Unplugged output) until the next
//   ack of VIRTIO_NET_F_STANDBY.
// - A host unplug timeout (FO-MIG-SRC-07, ModelOptions) that passes emits one warning
//   per primary still UnplugRequested, stating the timeout that fired; primaries the
//   guest still holds stay UnplugRequested and are plugged back when the guest finally
//   releases them.
// - A primary refused after the negotiation (FO-CFG-03/06/07) stays Refused; later
//   negotiations do not retry it.
// - Removing a standby unpairs its primary (which keeps its state); a standby with the
//   same id added later pairs with it again.
//
// Host unplug timeouts (FO-MIG-SRC-07), both optional, fired by tick():
// - unplug_timeout runs from migrate(): it ends wait-unplug as failed and cancelling
//   as cancelled.
// - cancel_unplug_timeout runs from a migrate_cancel() in wait-unplug: it ends
//   cancelling as cancelled.
// With both, the earlier deadline wins (on a tie, unplug_timeout). QEMU 10 (measured)
// has no unplug_timeout (wait-unplug waits for the guest forever) and a
// cancel_unplug_timeout of 30 s (120 polls of 250 ms in qemu_savevm_wait_unplug); its
// warning, "migration: partially unplugged device on failure", is printed once and
// does not name the primary (the model's warnings do: see trace_checker.hpp, rule 3).
#pragma once

#include <bitset>
#include <chrono>
#include <cstddef>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "vnetct/common/result.hpp"

namespace vnetct::reference_impl {

using Milliseconds = std::chrono::milliseconds;

// VNETCT_DEFINE_ERRC is reused below for plain enums: it generates an enum class
// and its to_string from one (Name, "text") list.

#define VNETCT_BUS_KINDS(X)                                               \
    X(RootPortHotplug, "hot-pluggable PCI Express port (pcie-root-port)") \
    X(RootBus, "PCI Express root bus, not hot-pluggable (pcie.0)")        \
    X(ConventionalPci, "conventional PCI bus (behind a pci-bridge)")
VNETCT_DEFINE_ERRC(BusKind, VNETCT_BUS_KINDS)

// One -device / device_add. A standby has `failover`; a primary has a non-empty
// `failover_pair_id`.
struct DeviceSpec {
    std::string id;
    std::string driver;
    bool failover = false;
    std::string failover_pair_id;
    std::string bus;
    BusKind bus_kind = BusKind::RootPortHotplug;
    bool multifunction = false;
    bool network_class = true;
    std::string slot;  // "" lets the host choose: never conflicts
};

enum class Role { Source, Target };

// Deliberately broken behaviours for the harness's self-test. Each one changes the
// outputs of some scenario.
#define VNETCT_FAILOVER_MUTATIONS(X)                                                   \
    X(LeaveWaitUnplugEarly, "goes active without waiting for the guest's release")     \
    X(ForgetReplugAfterCancel, "does not plug released primaries back on the source")  \
    X(NegotiatedBeforeAck, "emits FAILOVER_NEGOTIATED and plugs the primary at start") \
    X(NoUnplugPrimaryEvent, "asks for the release without emitting UNPLUG_PRIMARY")    \
    X(PlugPrimaryWithoutStandbyAck, "plugs the primary although bit 62 was not acked") \
    X(NoReplugOnTarget, "never plugs the primary on the target")
VNETCT_DEFINE_ERRC(Mutation, VNETCT_FAILOVER_MUTATIONS)

#define VNETCT_COUNT_ENTRY(name, text) +1
inline constexpr std::size_t kMutationCount = 0 VNETCT_FAILOVER_MUTATIONS(VNETCT_COUNT_ENTRY);
#undef VNETCT_COUNT_ENTRY

class Mutations {
  public:
    Mutations() = default;
    Mutations(std::initializer_list<Mutation> mutations);
    [[nodiscard]] bool has(Mutation mutation) const;
    [[nodiscard]] bool none() const { return m_bits.none(); }
    void add(Mutation mutation);

  private:
    std::bitset<kMutationCount> m_bits;
};

// Every mutation, in list order.
[[nodiscard]] std::span<const Mutation> all_mutations();

// Host unplug timeouts (FO-MIG-SRC-07): see the header comment.
struct ModelOptions {
    // From migrate(); none: wait-unplug waits for the guest forever.
    std::optional<Milliseconds> unplug_timeout;
    // From a migrate_cancel() in wait-unplug; none: cancelling waits for the guest
    // forever (unless unplug_timeout ends it). QEMU 10: 30000 ms.
    std::optional<Milliseconds> cancel_unplug_timeout;
    Mutations mutations;
    // FO-CFG-02 lets a host report a hidden primary on the root bus either way:
    // false, it refuses to start (QEMU 10, 11); true, it starts, hides the primary
    // and at the plug warns and never shows it (QEMU 7.2).
    bool root_bus_primary_refused_at_plug = false;
};

#define VNETCT_OUTPUT_KINDS(X)       \
    X(QmpEvent, "event")             \
    X(Warning, "warning")            \
    X(StartError, "start-error")     \
    X(CommandError, "command-error") \
    X(Plugged, "plugged")            \
    X(Unplugged, "unplugged")
VNETCT_DEFINE_ERRC(OutputKind, VNETCT_OUTPUT_KINDS)

// QmpEvent: name is the event, data its "data". StartError/CommandError/Warning: text
// is the host's message. Plugged/Unplugged: name is the device id (the guest gains or
// loses it). rule: the rule this output realises ("" for bookkeeping like STOP).
struct Output {
    OutputKind kind;
    std::string name;
    nlohmann::json data;
    std::string rule;
    std::string text;
    Milliseconds at;
};

#define VNETCT_PRIMARY_STATES(X)           \
    X(Hidden, "hidden")                    \
    X(Plugged, "plugged")                  \
    X(UnplugRequested, "unplug-requested") \
    X(Released, "released")                \
    X(Refused, "refused")
VNETCT_DEFINE_ERRC(PrimaryState, VNETCT_PRIMARY_STATES)

// to_string gives QEMU's MIGRATION status names.
#define VNETCT_MIGRATION_STATES(X) \
    X(None, "none")                \
    X(Setup, "setup")              \
    X(WaitUnplug, "wait-unplug")   \
    X(Active, "active")            \
    X(Cancelling, "cancelling")    \
    X(Cancelled, "cancelled")      \
    X(Failed, "failed")            \
    X(Completed, "completed")
VNETCT_DEFINE_ERRC(MigrationState, VNETCT_MIGRATION_STATES)

#define VNETCT_FAILOVER_MODEL_ERRORS(X)                                                \
    X(AlreadyStarted, "the host has already been started")                             \
    X(NotStarted, "the host has not been started")                                     \
    X(RefusedToStart, "the host refused to start")                                     \
    X(DuplicateId, "a device with this id already exists")                             \
    X(UnknownDevice, "no device with this id")                                         \
    X(NotAPrimary, "the device is not a failover primary")                             \
    X(FeatureNotOffered, "the device does not offer VIRTIO_NET_F_STANDBY")             \
    X(NotUnplugRequested, "the host did not ask the guest to release this primary")    \
    X(GuestNotRunning, "the guest is not running on this host")                        \
    X(WrongRole, "the input does not apply to this host's migration role")             \
    X(MigrationInProgress, "a migration is in progress (not modelled for this input)") \
    X(NoMigrationInProgress, "no migration is in progress")                            \
    X(TransferNotRunning, "the migration is not transferring state (not active)")      \
    X(TimeWentBackwards, "now is earlier than a previous input's time")
VNETCT_DEFINE_ERRC(ModelErrc, VNETCT_FAILOVER_MODEL_ERRORS)

template <typename T>
using ModelResult = Result<T, ModelErrc>;

class FailoverHost {
  public:
    explicit FailoverHost(Role role, ModelOptions options = {});

    // --- configuration and guest (both roles) ---------------------------------
    // Before start, in command-line order; start() then applies the configuration
    // rules and may refuse (a StartError output naming the rule).
    ModelResult<void> cold_plug(DeviceSpec spec);
    ModelResult<void> start(Milliseconds now);
    // device_add; a refusal is a CommandError output, not an error of the model.
    ModelResult<void> hot_plug(DeviceSpec spec, Milliseconds now);
    ModelResult<void> device_del(std::string_view id, Milliseconds now);
    ModelResult<void> guest_ack_features(std::string_view standby_id, bool standby_bit,
                                         Milliseconds now);
    ModelResult<void> guest_reset(Milliseconds now);
    ModelResult<void> guest_released(std::string_view primary_id, Milliseconds now);
    ModelResult<void> tick(Milliseconds now);

    // --- migration source ------------------------------------------------------
    ModelResult<void> migrate(Milliseconds now);
    // A cancel with nothing to cancel (none, completed, ...) has no effect (QEMU's).
    ModelResult<void> migrate_cancel(Milliseconds now);
    ModelResult<void> migration_failed(Milliseconds now);  // also on the target
    // The state transfer finished: STOP, device, completed. After a cancel or a
    // failure it has no effect (the cancel won the race).
    ModelResult<void> transfer_done(Milliseconds now);

    // --- migration target ------------------------------------------------------
    ModelResult<void> incoming(Milliseconds now);
    // The migrated state is loaded; these standbys' guest had acked bit 62.
    ModelResult<void> incoming_loaded(std::span<const std::string> negotiated_standby_ids,
                                      Milliseconds now);

    // --- observations ----------------------------------------------------------
    [[nodiscard]] std::vector<Output> take_outputs();
    [[nodiscard]] MigrationState migration_state() const { return m_migration; }
    [[nodiscard]] ModelResult<PrimaryState> primary_state(std::string_view id) const;
    // Ids of the devices on the guest's PCI buses (what query-pci lists), in add order.
    [[nodiscard]] std::vector<std::string> visible_devices() const;
    [[nodiscard]] bool guest_running() const { return m_guest_running; }

  private:
    struct Device {
        DeviceSpec spec;
        PrimaryState state = PrimaryState::Plugged;  // non-primaries: Plugged
        bool standby_acked = false;                  // standbys: bit 62 acked since reset
    };
    struct Refusal {
        std::string rule;
        std::string text;
    };
    // When the host stops waiting for the guest's release (FO-MIG-SRC-07), and why.
    struct UnplugDeadline {
        Milliseconds at;
        Milliseconds timeout;  // the timeout that set it, stated in the warning
        bool from_cancel;      // cancel_unplug_timeout (else unplug_timeout)
    };

    // failover_model.cpp: bookkeeping
    ModelResult<void> advance(Milliseconds now);
    ModelResult<void> require_running_host() const;
    ModelResult<void> require_guest() const;
    [[nodiscard]] bool has(Mutation mutation) const { return m_options.mutations.has(mutation); }
    [[nodiscard]] bool migration_in_progress() const;
    Device* find(std::string_view id);
    [[nodiscard]] const Device* find(std::string_view id) const;
    Device* standby_named(std::string_view id);
    Device* primary_of(const Device& standby);
    [[nodiscard]] bool is_paired(const Device& primary);
    void emit_event(std::string name, nlohmann::json data, std::string rule);
    void emit(OutputKind kind, std::string name, std::string rule, std::string text);

    // failover_model_devices.cpp: adding devices, configuration rules
    std::optional<Refusal> add_device(DeviceSpec spec, bool hot);
    [[nodiscard]] std::optional<Refusal> realize_refusal(const DeviceSpec& spec,
                                                         const Device* standby) const;

    // failover_model_negotiation.cpp
    void negotiate(Device& standby, const std::string& rule, bool plug);
    void plug_primary(Device& primary, const std::string& rule);

    // failover_model_migration.cpp
    [[nodiscard]] std::vector<Device*> primaries_in(PrimaryState state);
    void end_migration(MigrationState state, const std::string& rule);
    void plug_back_released(const std::string& rule);

    Role m_role;
    ModelOptions m_options;
    std::vector<DeviceSpec> m_cold_plugged;
    std::vector<Device> m_devices;  // in add order
    bool m_started = false;
    bool m_refused = false;
    bool m_guest_running = false;
    MigrationState m_migration = MigrationState::None;
    std::optional<UnplugDeadline> m_unplug_deadline;  // the earliest one that applies
    Milliseconds m_now{0};
    std::vector<Output> m_outputs;
};

}  // namespace vnetct::reference_impl
