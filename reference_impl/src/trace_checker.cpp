// The trace checker: replays a parsed trace against FailoverHost and judges each
// observation (the judging rules are in trace_checker.hpp). The replay class is
// declared in trace_checker_replay.hpp; its pci-snapshot judging is in
// trace_checker_pci.cpp.
#include "vnetct/reference_impl/trace_checker.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>

#include "trace_checker_replay.hpp"
#include "vnetct/reference_impl/rules.hpp"

namespace vnetct::reference_impl {
namespace detail {
namespace {

using nlohmann::json;

// Every key the model gives appears with the same value in the observation.
bool data_matches(const json& expected, const json& observed) {
    for (const auto& [key, value] : expected.items()) {
        if (!observed.contains(key) || observed.at(key) != value) {
            return false;
        }
    }
    return true;
}

Milliseconds model_time(double t_ms) {
    return Milliseconds{static_cast<long long>(std::floor(t_ms))};
}

}  // namespace

TraceResult<Verdict> TraceReplay::run() {
    for (m_index = 0; m_index < m_trace.entries.size(); ++m_index) {
        const TraceEntry& entry = m_trace.entries[m_index];
        if (auto ticked = m_model.tick(model_time(entry.t_ms)); !ticked) {
            return fail(TraceErrc::InputRejected, where() + ticked.error().message());
        }
        collect();
        Step step = replay(entry);
        if (!step) {
            return tl::unexpected<Error<TraceErrc>>(std::move(step.error()));
        }
        if (*step) {
            return Verdict{false, std::move(**step), std::move(m_notes)};
        }
    }
    std::optional<Violation> violation = end_of_trace();
    return Verdict{!violation.has_value(), std::move(violation), std::move(m_notes)};
}

// --- bookkeeping -------------------------------------------------------------

std::string TraceReplay::where() const {
    return "entries[" + std::to_string(m_index) + "] (" +
           std::string{to_string(m_trace.entries[m_index].kind)} + "): ";
}

void TraceReplay::note(std::string text) { m_notes.push_back(where() + text); }

std::string TraceReplay::fallback_rule() const {
    return m_trace.role == Role::Source ? "FO-MIG-SRC-02" : "FO-MIG-TGT-02";
}

Violation TraceReplay::violation(std::string rule, std::size_t index, std::string observed,
                                 std::string expected) const {
    if (rule.empty()) {
        rule = fallback_rule();
    }
    const std::optional<Rule> found = find_rule(rule);
    return Violation{rule,
                     found ? std::string{found->sentence} : "",
                     index,
                     m_trace.entries[index].raw,
                     std::move(observed),
                     std::move(expected)};
}

DeviceView* TraceReplay::view_of(std::string_view id) {
    for (DeviceView& view : m_devices) {
        if (!id.empty() && view.spec.id == id) {
            return &view;
        }
    }
    return nullptr;
}

void TraceReplay::add_view(const DeviceSpec& spec) {
    if (spec.id.empty() || view_of(spec.id) != nullptr) {
        return;
    }
    const bool visible = contains(m_model.visible_devices(), spec.id);
    m_devices.push_back(DeviceView{spec, visible, true, "", "", {}});
}

// Drains the model's outputs into the pending lists.
void TraceReplay::collect() {
    std::optional<std::size_t> herald;
    for (Output& output : m_model.take_outputs()) {
        Pending pending{std::move(output), m_index, m_next_order++};
        const Output& emitted = pending.output;
        DeviceView* view = view_of(emitted.name);
        switch (emitted.kind) {
            case OutputKind::QmpEvent:
                if (judged(emitted.name, emitted.data)) {
                    herald = pending.order;
                    m_events.push_back(std::move(pending));
                }
                break;
            case OutputKind::Warning:
            case OutputKind::StartError:
            case OutputKind::CommandError:
                if (view != nullptr && emitted.rule.starts_with("FO-CFG") &&
                    emitted.rule != "FO-CFG-04") {
                    view->refusal_rule = emitted.rule;
                }
                if (emitted.kind == OutputKind::Warning) {
                    m_warnings.push_back(std::move(pending));
                } else if (emitted.kind == OutputKind::StartError) {
                    m_start_errors.push_back(std::move(pending));
                } else {
                    note("the model refuses this device_add (" + emitted.rule + ": " +
                         emitted.text + "); the trace has no command-error entry to check");
                }
                break;
            case OutputKind::Plugged:
            case OutputKind::Unplugged: {
                if (view == nullptr) {
                    break;
                }
                const bool to_visible = emitted.kind == OutputKind::Plugged;
                if (!to_visible && emitted.rule == "FO-MIG-SRC-01") {
                    view->partially_unplugged = true;
                    view->pending.clear();
                    note(view->spec.id + " released for the migration: partially unplugged, query-pci may "
                         "still list it (its visibility is not judged until it is plugged back)");
                    break;
                }
                if (to_visible && view->partially_unplugged) {
                    // Plugged back: judged again, from "absent" (what the guest had) to visible.
                    view->partially_unplugged = false;
                    view->settled_visible = false;
                    view->fresh = false;
                }
                if (view->fresh) {
                    view->settled_visible = !to_visible;
                }
                view->fresh = false;
                view->pending.push_back(Transition{std::move(pending), to_visible, herald});
                break;
            }
        }
    }
    for (DeviceView& view : m_devices) {
        view.fresh = false;
    }
}

bool TraceReplay::judged(std::string_view name, const nlohmann::json& data) const {
    if (name == "RESUME") {
        return m_trace.role == Role::Target;
    }
    if (name == "MIGRATION" && data.is_object() && data.contains("status") && data["status"].is_string()) {
        const std::string status = data["status"].get<std::string>();
        if (std::find(std::begin(kUnjudgedMigrationStatuses), std::end(kUnjudgedMigrationStatuses), status) !=
            std::end(kUnjudgedMigrationStatuses)) {
            return false;
        }
    }
    return std::find(std::begin(kJudgedEvents), std::end(kJudgedEvents), name) !=
           std::end(kJudgedEvents);
}

bool TraceReplay::any_primary_requested() const {
    for (const DeviceView& view : m_devices) {
        const auto state = m_model.primary_state(view.spec.id);
        if (state && *state == PrimaryState::UnplugRequested) {
            return true;
        }
    }
    return false;
}

AckState TraceReplay::ack_of(const std::string& standby) const {
    const auto found = m_acks.find(standby);
    return found == m_acks.end() ? AckState::None : found->second;
}

// --- inputs ------------------------------------------------------------------

Step TraceReplay::replay(const TraceEntry& entry) {
    const Milliseconds now = model_time(entry.t_ms);
    ModelResult<void> result;
    switch (entry.kind) {
        case TraceEntryKind::QmpEvent:
            return judge_event(entry);
        case TraceEntryKind::Pci:
            return judge_pci(entry);
        case TraceEntryKind::StartError:
            return judge_start_error(entry);
        case TraceEntryKind::Stderr:
            judge_stderr(entry);
            return std::nullopt;
        case TraceEntryKind::Start:
            for (std::size_t index = 0; index < m_trace.devices.size() && result; ++index) {
                result = m_model.cold_plug(m_trace.devices[index]);
            }
            if (result) {
                result = m_model.start(now);
            }
            if (result) {
                m_started = true;
                for (const DeviceSpec& spec : m_trace.devices) {
                    add_view(spec);
                }
            }
            break;
        case TraceEntryKind::GuestAck:
            result = m_model.guest_ack_features(entry.id, entry.standby_bit, now);
            if (result) {
                m_acks[entry.id] = entry.standby_bit ? AckState::Acked : AckState::AckedWithoutBit;
            }
            break;
        case TraceEntryKind::GuestReset:
            result = m_model.guest_reset(now);
            for (auto& [standby, ack] : m_acks) {
                ack = result && ack != AckState::None ? AckState::Reset : ack;
            }
            break;
        case TraceEntryKind::GuestReleased:
            result = m_model.guest_released(entry.id, now);
            break;
        case TraceEntryKind::HotPlug:
            result = m_model.hot_plug(entry.device, now);
            if (result) {
                add_view(entry.device);
            }
            break;
        case TraceEntryKind::DeviceDel:
            result = m_model.device_del(entry.id, now);
            break;
        case TraceEntryKind::Migrate:
            result = m_model.migrate(now);
            break;
        case TraceEntryKind::MigrateCancel:
            result = m_model.migrate_cancel(now);
            break;
        case TraceEntryKind::MigrationFailed:
            result = m_model.migration_failed(now);
            break;
        case TraceEntryKind::TransferDone:
            result = m_model.transfer_done(now);
            break;
        case TraceEntryKind::Incoming:
            result = m_model.incoming(now);
            break;
        case TraceEntryKind::IncomingLoaded:
            result = m_model.incoming_loaded(entry.ids, now);
            m_loaded = m_loaded || result.has_value();
            break;
    }
    if (!result) {
        return rejected(entry, result.error());
    }
    collect();
    return std::nullopt;
}

// An input the model cannot apply: a violation when it shows the host doing
// what a rule forbids, else the trace contradicts itself.
Step TraceReplay::rejected(const TraceEntry& entry, const Error<ModelErrc>& error) {
    std::string rule;
    std::string expected;
    if (entry.kind == TraceEntryKind::GuestReleased &&
        error.code == ModelErrc::NotUnplugRequested) {
        const auto state = m_model.primary_state(entry.id);
        if (state && *state == PrimaryState::Hidden) {
            rule = "FO-NEG-01";
            expected = entry.id + " hidden: the guest cannot hold it";
        } else if (state && *state == PrimaryState::Plugged) {
            rule = "FO-MIG-SRC-01";
            expected = "no request to release " + entry.id + " (migration " +
                       std::string{to_string(m_model.migration_state())} + ")";
        }
    } else if ((entry.kind == TraceEntryKind::GuestAck ||
                entry.kind == TraceEntryKind::IncomingLoaded) &&
               error.code == ModelErrc::FeatureNotOffered) {
        rule = "FO-CFG-05";
        expected = "no VIRTIO_NET_F_STANDBY offered by a failover=off device";
    } else if (entry.kind == TraceEntryKind::TransferDone &&
               error.code == ModelErrc::TransferNotRunning &&
               m_model.migration_state() == MigrationState::WaitUnplug) {
        rule = "FO-MIG-SRC-03";
        expected = "the migration still in wait-unplug: no state transfer";
    }
    if (rule.empty()) {
        return fail(TraceErrc::InputRejected, where() + error.message());
    }
    return violation(rule, m_index, std::string{to_string(entry.kind)} + ": " + error.message(),
                     expected);
}

// --- events ------------------------------------------------------------------

std::string TraceReplay::pending_events() const {
    if (m_events.empty()) {
        return "no judged event was pending";
    }
    std::string text = "pending:";
    for (const Pending& pending : m_events) {
        text += " " + describe_output(pending.output) + " (" +
                (pending.output.rule.empty() ? "-" : pending.output.rule) + ", from entry " +
                std::to_string(pending.cause) + ");";
    }
    text.pop_back();
    return text;
}

Step TraceReplay::judge_event(const TraceEntry& entry) {
    // A target listens in "setup"; any later status or a RESUME means a source connected.
    m_migration_seen = m_migration_seen || entry.event == "RESUME" ||
                       (entry.event == "MIGRATION" && entry.data.is_object() && entry.data.value("status", "") != "setup");
    if (!judged(entry.event, entry.data)) {
        return std::nullopt;
    }
    const Pending* first_of_name = nullptr;
    std::optional<std::size_t> match;
    for (std::size_t index = 0; index < m_events.size(); ++index) {
        const Output& output = m_events[index].output;
        if (output.name != entry.event) {
            continue;
        }
        first_of_name = first_of_name == nullptr ? &m_events[index] : first_of_name;
        if (data_matches(output.data, entry.data)) {
            match = index;
            break;
        }
        if (entry.event == "MIGRATION") {
            break;  // statuses strictly in order
        }
    }
    const std::string observed =
        describe_output(Output{OutputKind::QmpEvent, entry.event, entry.data, "", "", {}});
    if (!match) {
        return violation(unexpected_event_rule(entry, first_of_name), m_index, observed,
                         pending_events());
    }
    const Pending& matched = m_events[*match];
    for (std::size_t index = 0; index < *match; ++index) {
        const Pending& earlier = m_events[index];
        if (earlier.output.name == matched.output.name && earlier.cause == matched.cause) {
            continue;
        }
        return violation(earlier.output.rule, m_index,
                         observed + " before " + describe_output(earlier.output),
                         describe_output(earlier.output) + " first (emitted at entry " +
                             std::to_string(earlier.cause) + ")");
    }
    for (DeviceView& view : m_devices) {
        for (Transition& transition : view.pending) {
            transition.due = transition.due || transition.herald == matched.order;
        }
    }
    m_events.erase(m_events.begin() + static_cast<std::ptrdiff_t>(*match));
    return std::nullopt;
}

// The rule an unexpected judged event breaks, from the model's state.
std::string TraceReplay::unexpected_event_rule(const TraceEntry& entry,
                                               const Pending* first_of_name) const {
    const std::string pending_rule = first_of_name != nullptr ? first_of_name->output.rule : "";
    if (entry.event == "FAILOVER_NEGOTIATED") {
        if (!pending_rule.empty()) {
            return pending_rule;  // negotiated, but not this
        }
        if (m_trace.role == Role::Target && !m_loaded) {
            return "FO-MIG-TGT-01";  // negotiated (so plugging the primary) before the state was loaded
        }
        const std::string id = entry.data.value("device-id", "");
        const auto spec = std::find_if(m_trace.devices.begin(), m_trace.devices.end(),
                                       [&id](const DeviceSpec& other) { return other.id == id; });
        if (spec != m_trace.devices.end() && !spec->failover && spec->failover_pair_id.empty()) {
            return "FO-CFG-05";
        }
        switch (ack_of(id)) {
            case AckState::AckedWithoutBit:
                return "FO-NEG-03";
            case AckState::Reset:
                return "FO-NEG-04";
            case AckState::None:
                // The host announces the primary's plug while the primary must stay hidden.
                return "FO-NEG-01";
            default:
                return "FO-NEG-02";
        }
    }
    if (entry.event == "UNPLUG_PRIMARY") {
        return "FO-MIG-SRC-01";
    }
    if (entry.event == "MIGRATION" && m_trace.role == Role::Source) {
        const std::string status = entry.data.value("status", "");
        const MigrationState state = m_model.migration_state();
        if ((status == "active" || status == "completed") &&
            any_primary_requested()) {
            return "FO-MIG-SRC-03";
        }
        if (status == "cancelled" && state == MigrationState::Cancelling) {
            return "FO-MIG-SRC-04";
        }
        if ((status == "cancelling" || status == "cancelled") &&
            state == MigrationState::Completed) {
            return "FO-MIG-SRC-06";
        }
    }
    return pending_rule.empty() ? fallback_rule() : pending_rule;
}

// --- host messages -----------------------------------------------------------

Step TraceReplay::judge_start_error(const TraceEntry& entry) {
    if (!m_start_errors.empty()) {
        const Pending expected = m_start_errors.front();
        m_start_errors.erase(m_start_errors.begin());
        const auto phrase = host_message_phrase(expected.output.rule);
        if (phrase && !host_message_matches(entry.text, expected.output.rule)) {
            note("start error '" + entry.text + "' lacks '" + std::string{*phrase} +
                 "' of " + expected.output.rule + "; accepted as the expected refusal");
        }
        return std::nullopt;
    }
    const auto rule = rule_of_host_message(entry.text);
    if (!rule) {
        return fail(TraceErrc::UnexplainedStartError, where() + "'" + entry.text + "'");
    }
    return violation(std::string{*rule}, m_index, "the host refused to start: " + entry.text,
                     "the model starts this configuration");
}

void TraceReplay::judge_stderr(const TraceEntry& entry) {
    auto by_phrase = std::find_if(m_warnings.begin(), m_warnings.end(), [&entry](const Pending& w) {
        return host_message_matches(entry.text, w.output.rule);
    });
    if (by_phrase != m_warnings.end()) {
        m_warnings.erase(by_phrase);
        return;
    }
    if (const auto rule = rule_of_host_message(entry.text)) {
        note("stderr '" + entry.text + "' reads like " + std::string{*rule} +
             " but the model expected no such warning");
    }
}

// --- end of trace ------------------------------------------------------------

std::optional<Violation> TraceReplay::end_of_trace() {
    // A target no source ever migrated to (the case ended before its migrate): its
    // statuses come only once a source connects, so none is owed by its host.
    const bool never_reached = m_trace.role == Role::Target && !m_loaded && !m_migration_seen;
    std::vector<const Pending*> unmet;
    for (const auto* list : {&m_events, &m_start_errors, &m_warnings}) {
        for (const Pending& pending : *list) {
            if (never_reached && pending.output.name == "MIGRATION") {
                note("no migration reached this target: its " + describe_output(pending.output) + " is not owed");
                continue;
            }
            unmet.push_back(&pending);
        }
    }
    for (const DeviceView& view : m_devices) {
        for (const Transition& transition : view.pending) {
            // A transition the host owed and no later snapshot confirmed is unmet: the
            // harness takes a snapshot at the end of every case, so absence of one is absence.
            if (!transition.emitted.output.rule.empty()) {
                unmet.push_back(&transition.emitted);
            }
        }
    }
    if (unmet.empty()) {
        return std::nullopt;
    }
    const Pending& first = **std::min_element(
        unmet.begin(), unmet.end(),
        [](const Pending* a, const Pending* b) { return a->order < b->order; });
    std::string observed = "never observed by the end of the trace";
    if ((first.output.kind == OutputKind::Plugged || first.output.kind == OutputKind::Unplugged)) {
        observed = m_last_pci ? "not shown by the last pci snapshot (entry " + std::to_string(*m_last_pci) + ")"
                              : "no pci snapshot after it";
    }
    Violation broken = violation(first.output.rule, first.cause, observed,
                                 describe_output(first.output) + " (emitted at entry " +
                                     std::to_string(first.cause) + ")");
    broken.at_end_of_trace = true;
    return broken;
}

}  // namespace detail

TraceResult<Verdict> check_failover_trace(const FailoverTrace& trace,
                                          const Mutations& model_mutations) {
    return detail::TraceReplay{trace, model_mutations}.run();
}

TraceResult<Verdict> check_failover_trace(const nlohmann::json& trace,
                                          const Mutations& model_mutations) {
    auto parsed = parse_failover_trace(trace);
    if (!parsed) {
        return tl::unexpected<Error<TraceErrc>>(std::move(parsed.error()));
    }
    return check_failover_trace(*parsed, model_mutations);
}

}  // namespace vnetct::reference_impl
