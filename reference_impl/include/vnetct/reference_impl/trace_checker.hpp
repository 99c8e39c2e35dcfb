// The trace checker: replays an observed failover trace against the reference model
// (FailoverHost) and says whether it is conformant or names the FIRST violation: the
// rule, its sentence, the trace entry where it broke, what was seen and what the
// model allowed instead.
//
// Trace (JSON, built by the harness):
//   {"role": "source"|"target", "unplug_timeout_ms": null|number,
//    "cancel_unplug_timeout_ms": null|number,
//    "devices": [DeviceSpec...], "entries": [{"t_ms": number, "kind": ..., ...}...]}
// The two timeouts are the host's (FO-MIG-SRC-07; ModelOptions, failover_model.hpp),
// passed to the model: unplug_timeout_ms bounds the wait for the guest's release from
// migrate, cancel_unplug_timeout_ms from a migrate-cancel in wait-unplug (QEMU 10:
// none and 30000). Each is optional (absent or null: no such timeout), a non-negative
// number of milliseconds, rounded down.
// A DeviceSpec is {"id", "driver", "failover", "failover_pair_id", "bus", "bus_kind",
// "multifunction", "network_class", "slot"}; "driver" and "bus_kind" are required,
// the others default as in DeviceSpec. Entries are in host arrival order, t_ms
// non-decreasing; the model's time is t_ms rounded down to a millisecond.
//
// Inputs drive the model: start, guest-ack {standby, standby_bit}, guest-reset,
// guest-released {primary}, hot-plug {device}, device-del {id}, migrate,
// migrate-cancel, migration-failed, transfer-done, incoming, incoming-loaded
// {standbys}. Guest evidence (guest-ack, guest-released) must sit where the guest
// acted: the checker trusts entry order. Before every entry the model is ticked to
// its t_ms, so a host unplug timeout (FO-MIG-SRC-07) fires at the first entry at or
// after the deadline (with both timeouts, the earlier deadline).
// Observations are judged: qmp-event {name, data}, pci {visible}, start-error
// {text}, stderr {text}.
//
// Judging rules.
// 1. Events. Only kJudgedEvents are judged (FAILOVER_NEGOTIATED, UNPLUG_PRIMARY,
//    MIGRATION; RESUME on the target only, where FO-MIG-TGT-02 orders it; the
//    target must run without -S), MIGRATION only with a status some rule speaks
//    of: kUnjudgedMigrationStatuses are ignored, expected or observed (a release
//    may pass through them or not). Every other event (STOP, DEVICE_DELETED,
//    NIC_RX_FILTER_CHANGED, RESUME on the source, ...) is ignored. Each judged
//    event the model emits is *pending* until observed. An observed judged event
//    matches a pending one of its name when every key of the expected data appears
//    with an equal value in the observed data: MIGRATION only the first pending
//    MIGRATION (statuses strictly in order), the other names the first pending one
//    that matches (two primaries of one input may come in either order).
//    No match: a violation whose `expected` lists what was pending; its rule is
//    found from the model's state (e.g. MIGRATION active while a primary is still
//    requested: FO-MIG-SRC-03; FAILOVER_NEGOTIATED before any ack: FO-NEG-02).
//    A match must not overtake a pending judged event the model emitted earlier,
//    except one of the same name from the same input: the host emits events in the
//    order of the inputs that caused them (violation of the overtaken event's rule).
// 2. PCI. A pci snapshot is judged for every device of the trace (devices and
//    hot-plugs) with an id, once start was replayed; other ids are ignored. Each
//    device has a settled visibility (what the host was last known to show) and a
//    queue of pending transitions (the model's Plugged/Unplugged outputs). With no
//    pending transition, the snapshot must agree with the model. With pending ones,
//    the device may show the settled state or any pending target, except that a
//    transition becomes *due* when the judged event the model emitted just before
//    it in the same input (its herald) is observed: e.g. once FAILOVER_NEGOTIATED
//    net1 was observed, hostdev0 must be visible; once MIGRATION cancelled was,
//    the released primary must be back. Once a transition is due, only its target
//    and the targets of later transitions are allowed. A snapshot settles every
//    transition up to the latest one whose target it shows. At the end of the trace, a transition still
//    pending is a violation if a pci snapshot was taken after it was emitted (the
//    host's last known state disagrees); without a later snapshot it is a note.
// 3. stderr. A Warning output is pending until a stderr entry at or after it
//    matches: its text contains, case-insensitively, the key phrase of the
//    warning's rule (kWarningPhrases: QEMU 10's wording); for a rule without a key
//    phrase (FO-MIG-SRC-07: the model's timeout text is its own) any stderr line
//    matches. A wording deviation documented here, not judged (and no note):
//    FO-MIG-SRC-07 asks for a warning naming the primary, but QEMU 10's ("migration:
//    partially unplugged device on failure", after its 30 s cancel timeout) does not
//    name it. Known gap: QEMU prints that line once however many primaries are still
//    held, while the model warns per primary, so with two held primaries one warning
//    stays unmatched (a violation at the end).
//    Each stderr line matches at most one warning; phrase matches are tried first.
//    Unmatched stderr lines are ignored (QEMU prints unrelated warnings), with a
//    note when they carry a key phrase. Warnings unmatched at the end: violation.
// 4. start-error. An expected StartError is pending until a start-error entry
//    (any text; a note if the key phrase is absent). A start-error the model did
//    not expect is a violation of the configuration rule whose key phrase its
//    text carries, else a trace error (UnexplainedStartError).
//    CommandError outputs (refused device_add) have no observation kind; the
//    refused device is judged through pci (never visible) and noted.
// 5. Inputs the model rejects: a violation when the rejection means the host
//    did something a rule forbids (guest-released for a primary the host did not
//    ask to release: FO-MIG-SRC-01, for a hidden one FO-NEG-01; guest-ack of bit 62
//    on a failover=off standby: FO-CFG-05; transfer-done in wait-unplug:
//    FO-MIG-SRC-03), otherwise a trace error (InputRejected).
// 6. End of trace: pending events, start errors, warnings and (see 2) transitions
//    are violations ("expected X (rule), never observed"), the earliest emitted
//    first; such a violation has at_end_of_trace set and names the entry that
//    caused the expectation.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "vnetct/common/result.hpp"
#include "vnetct/reference_impl/failover_model.hpp"

namespace vnetct::reference_impl {

#define VNETCT_TRACE_ERRORS(X)                                                          \
    X(MissingField, "a required field is missing")                                      \
    X(WrongType, "a field has the wrong JSON type")                                     \
    X(UnknownRole, "unknown role (expected source or target)")                          \
    X(UnknownKind, "unknown entry kind")                                                \
    X(UnknownBusKind, "unknown bus_kind")                                               \
    X(TimeWentBackwards, "t_ms is earlier than the previous entry's")                   \
    X(DuplicateDevice, "two devices have the same id")                                  \
    X(InputRejected, "the model cannot apply this input: the trace is inconsistent")    \
    X(UnexplainedStartError, "the host refused to start for a reason no rule explains")
VNETCT_DEFINE_ERRC(TraceErrc, VNETCT_TRACE_ERRORS)

template <typename T>
using TraceResult = Result<T, TraceErrc>;

// to_string gives the "kind" string of the trace.
#define VNETCT_TRACE_ENTRY_KINDS(X)        \
    X(Start, "start")                      \
    X(GuestAck, "guest-ack")               \
    X(GuestReset, "guest-reset")           \
    X(GuestReleased, "guest-released")     \
    X(HotPlug, "hot-plug")                 \
    X(DeviceDel, "device-del")             \
    X(Migrate, "migrate")                  \
    X(MigrateCancel, "migrate-cancel")     \
    X(MigrationFailed, "migration-failed") \
    X(TransferDone, "transfer-done")       \
    X(Incoming, "incoming")                \
    X(IncomingLoaded, "incoming-loaded")   \
    X(QmpEvent, "qmp-event")               \
    X(Pci, "pci")                          \
    X(StartError, "start-error")           \
    X(Stderr, "stderr")
VNETCT_DEFINE_ERRC(TraceEntryKind, VNETCT_TRACE_ENTRY_KINDS)

// The event names the checker judges (RESUME only on the target).
inline constexpr std::string_view kJudgedEvents[] = {"FAILOVER_NEGOTIATED", "UNPLUG_PRIMARY",
                                                     "MIGRATION", "RESUME"};
// MIGRATION statuses no failover rule mentions: QEMU 7.2 has no "device" (the
// device state's transfer after the RAM), 11.1 reports "failing" before
// "failed", "pre-switchover" comes only with pause-before-switchover.
inline constexpr std::string_view kUnjudgedMigrationStatuses[] = {"device", "failing", "pre-switchover"};

// Key phrases (lower case) of the host's messages, by rule: they match stderr
// warnings and explain start errors.
struct WarningPhrase {
    std::string_view rule;
    std::string_view phrase;
};
inline constexpr WarningPhrase kWarningPhrases[] = {
    {"FO-CFG-01", "needs to have id"},
    {"FO-CFG-02", "does not support hotplugging"},
    {"FO-CFG-03", "own pci slot"},
    {"FO-CFG-04", "primary device not found"},
    {"FO-CFG-06", "failover primary device"},
    {"FO-CFG-07", "not available for"},
    {"FO-CFG-09", "more than one primary"},
    {"FO-MIG-SRC-07", "partially unplugged"},
};

// The key phrase of the rule's host message, if kWarningPhrases has one.
[[nodiscard]] std::optional<std::string_view> host_message_phrase(std::string_view rule);
// Whether the host's message carries the rule's key phrase (case-insensitive).
[[nodiscard]] bool host_message_matches(std::string_view text, std::string_view rule);
// The first rule (kWarningPhrases order) whose key phrase the message carries.
[[nodiscard]] std::optional<std::string_view> rule_of_host_message(std::string_view text);
// One line for a model output: `FAILOVER_NEGOTIATED {"device-id":"net1"}`,
// "hostdev0 visible in query-pci (plugged)", "a warning on stderr like '...'".
[[nodiscard]] std::string describe_output(const Output& output);

// One entry, typed. Which fields are set depends on kind.
struct TraceEntry {
    double t_ms = 0;
    TraceEntryKind kind = TraceEntryKind::Start;
    std::string id;                // guest-ack: standby; guest-released: primary; device-del
    bool standby_bit = false;      // guest-ack
    DeviceSpec device;             // hot-plug
    std::vector<std::string> ids;  // incoming-loaded: standbys; pci: visible
    std::string event;             // qmp-event: name
    nlohmann::json data;           // qmp-event: data ({} when absent)
    std::string text;              // start-error, stderr
    nlohmann::json raw;            // the entry as given
};

struct FailoverTrace {
    Role role = Role::Source;
    std::optional<Milliseconds> unplug_timeout;         // ModelOptions::unplug_timeout
    std::optional<Milliseconds> cancel_unplug_timeout;  // ModelOptions::cancel_unplug_timeout
    std::vector<DeviceSpec> devices;
    std::vector<TraceEntry> entries;
};

// Checks the schema; each error's detail names the field ("entries[3].t_ms: ...").
[[nodiscard]] TraceResult<FailoverTrace> parse_failover_trace(const nlohmann::json& trace);

struct Violation {
    std::string rule;
    std::string sentence;     // the rule's sentence (rules.hpp)
    std::size_t entry_index;  // where it broke (at the end: the entry that caused it)
    nlohmann::json entry;     // that entry as given
    std::string observed;
    std::string expected;     // what the model allowed or expected instead
    bool at_end_of_trace = false;

    // "FO-NEG-02 violated at entry 3 (qmp-event, t=12.5 ms): observed ...; expected
    // ... -- <sentence>"
    [[nodiscard]] std::string message() const;
};

struct Verdict {
    bool conformant = true;
    std::optional<Violation> violation;
    std::vector<std::string> notes;  // what was ignored or could not be confirmed
};

// `model_mutations` replays against a deliberately broken model (self-tests).
[[nodiscard]] TraceResult<Verdict> check_failover_trace(const FailoverTrace& trace,
                                                        const Mutations& model_mutations = {});
[[nodiscard]] TraceResult<Verdict> check_failover_trace(const nlohmann::json& trace,
                                                        const Mutations& model_mutations = {});

}  // namespace vnetct::reference_impl
