// Private to the trace checker: the replay that drives FailoverHost through a
// parsed trace and judges each observation (the judging rules are in
// trace_checker.hpp). Inputs, events, host messages and the end of the trace are
// judged in trace_checker.cpp; pci snapshots in trace_checker_pci.cpp.
#pragma once

#include <algorithm>
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vnetct/reference_impl/trace_checker.hpp"

namespace vnetct::reference_impl::detail {

inline bool contains(const std::vector<std::string>& ids, std::string_view id) {
    return std::find(ids.begin(), ids.end(), id) != ids.end();
}

// An output the model emitted that the trace has not shown yet.
struct Pending {
    Output output;
    std::size_t cause;  // the entry whose replay emitted it
    std::size_t order;  // emission order over the whole replay
};

// A Plugged/Unplugged output, judged through pci snapshots.
struct Transition {
    Pending emitted;
    bool to_visible;
    std::optional<std::size_t> herald;  // order of the judged event emitted just before it
    bool due = false;                   // the herald was observed
};

struct DeviceView {
    DeviceSpec spec;
    bool settled_visible = false;  // what the host was last known to show
    bool fresh = true;             // added by the current entry, no transition yet
    std::string last_rule;         // rule of the last settled transition
    std::string refusal_rule;      // why the host refuses it, if it does
    // A primary the guest released for a migration: QEMU keeps it realized on its
    // bus (partially unplugged, to plug it back on a failure), so query-pci still
    // lists it; its visibility is not judged until it is plugged back.
    bool partially_unplugged = false;
    std::vector<Transition> pending;
};

enum class AckState { None, Acked, AckedWithoutBit, Reset };

using Step = TraceResult<std::optional<Violation>>;

class TraceReplay {
  public:
    TraceReplay(const FailoverTrace& trace, const Mutations& mutations)
        : m_trace(trace),
          m_model(trace.role, ModelOptions{.unplug_timeout = trace.unplug_timeout,
                                           .cancel_unplug_timeout = trace.cancel_unplug_timeout,
                                           .mutations = mutations,
                                           .root_bus_primary_refused_at_plug = started(trace)}) {}

    // A trace without a start-error entry shows a host that started: the way of
    // FO-CFG-02 it took, if it has a hidden primary on the root bus.
    static bool started(const FailoverTrace& trace) {
        return std::none_of(trace.entries.begin(), trace.entries.end(), [](const TraceEntry& entry) {
            return entry.kind == TraceEntryKind::StartError;
        });
    }

    TraceResult<Verdict> run();

  private:
    // --- bookkeeping (trace_checker.cpp) --------------------------------------
    std::string where() const;
    void note(std::string text);
    std::string fallback_rule() const;
    Violation violation(std::string rule, std::size_t index, std::string observed,
                        std::string expected) const;
    DeviceView* view_of(std::string_view id);
    void add_view(const DeviceSpec& spec);
    void collect();
    bool judged(std::string_view name, const nlohmann::json& data) const;
    bool any_primary_requested() const;
    AckState ack_of(const std::string& standby) const;

    // --- inputs (trace_checker.cpp) -------------------------------------------
    Step replay(const TraceEntry& entry);
    Step rejected(const TraceEntry& entry, const Error<ModelErrc>& error);

    // --- events (trace_checker.cpp) -------------------------------------------
    std::string pending_events() const;
    Step judge_event(const TraceEntry& entry);
    std::string unexpected_event_rule(const TraceEntry& entry, const Pending* first_of_name) const;

    // --- pci (trace_checker_pci.cpp) ------------------------------------------
    Step judge_pci(const TraceEntry& entry);
    std::optional<Violation> settle(DeviceView& view, bool observed);
    std::string steady_rule(const DeviceView& view, bool observed) const;

    // --- host messages (trace_checker.cpp) ------------------------------------
    Step judge_start_error(const TraceEntry& entry);
    void judge_stderr(const TraceEntry& entry);

    // --- end of trace (trace_checker.cpp) -------------------------------------
    std::optional<Violation> end_of_trace();

    const FailoverTrace& m_trace;
    FailoverHost m_model;
    std::size_t m_index = 0;
    std::size_t m_next_order = 0;
    bool m_started = false;
    bool m_loaded = false;
    bool m_migration_seen = false;  // a source reached this VM: MIGRATION past setup, or RESUME
    std::optional<std::size_t> m_last_pci;
    std::map<std::string, AckState> m_acks;
    std::vector<DeviceView> m_devices;  // in add order
    std::vector<Pending> m_events;      // judged QMP events, in emission order
    std::vector<Pending> m_start_errors;
    std::vector<Pending> m_warnings;
    std::vector<std::string> m_notes;
};

}  // namespace vnetct::reference_impl::detail
