// The trace checker's pci judging: each query-pci snapshot against the model's
// visible devices and the Plugged/Unplugged transitions still pending (the rules
// are in trace_checker.hpp, section 2).
#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "trace_checker_replay.hpp"

namespace vnetct::reference_impl::detail {
namespace {

std::string visibility(std::string_view id, bool visible) {
    return std::string{id} + (visible ? " visible" : " absent");
}

}  // namespace

Step TraceReplay::judge_pci(const TraceEntry& entry) {
    if (!m_started) {
        note("query-pci before start: not judged");
        return std::nullopt;
    }
    m_last_pci = m_index;
    const std::vector<std::string> modelled = m_model.visible_devices();
    for (DeviceView& view : m_devices) {
        const bool observed = contains(entry.ids, view.spec.id);
        if (view.partially_unplugged) {
            continue;
        }
        if (view.pending.empty()) {
            const bool expected = contains(modelled, view.spec.id);
            if (observed == expected) {
                continue;
            }
            const std::string rule = steady_rule(view, observed);
            if (rule.empty()) {
                note(visibility(view.spec.id, observed) + ", the model says " +
                     (expected ? "visible" : "absent") + ": no failover rule covers it");
                continue;
            }
            return violation(rule, m_index, visibility(view.spec.id, observed),
                             visibility(view.spec.id, expected) + " (the model's state)");
        }
        if (auto broken = settle(view, observed)) {
            return broken;
        }
    }
    return std::nullopt;
}

// Allowed: the settled state (unless a transition is due) and every pending
// target from the last due transition on. Settles up to the latest one shown.
std::optional<Violation> TraceReplay::settle(DeviceView& view, bool observed) {
    const std::size_t count = view.pending.size();
    std::size_t first_allowed = 0;  // 0: the settled state, k: pending[k - 1]
    for (std::size_t k = 1; k <= count; ++k) {
        if (view.pending[k - 1].due) {
            first_allowed = k;
        }
    }
    auto state_at = [&view](std::size_t k) {
        return k == 0 ? view.settled_visible : view.pending[k - 1].to_visible;
    };
    std::optional<std::size_t> shown;
    for (std::size_t k = count + 1; k-- > first_allowed;) {
        if (state_at(k) == observed) {
            shown = k;
            break;
        }
    }
    if (!shown) {
        const Transition& due = view.pending[first_allowed - 1];
        if (due.emitted.output.rule.empty()) {
            note(visibility(view.spec.id, observed) + ", expected " +
                 describe_output(due.emitted.output) + ": no failover rule covers it");
            return std::nullopt;
        }
        return violation(due.emitted.output.rule, m_index, visibility(view.spec.id, observed),
                         describe_output(due.emitted.output) + " (the event emitted with it was "
                                                        "already observed)");
    }
    if (*shown > 0) {
        view.settled_visible = observed;
        view.last_rule = view.pending[*shown - 1].emitted.output.rule;
        view.pending.erase(view.pending.begin(),
                           view.pending.begin() + static_cast<std::ptrdiff_t>(*shown));
    }
    return std::nullopt;
}

// The rule a disagreement with no pending transition breaks ("" for none).
std::string TraceReplay::steady_rule(const DeviceView& view, bool observed) const {
    const std::string& pair = view.spec.failover_pair_id;
    if (observed) {  // the model hides it
        if (!view.refusal_rule.empty()) {
            return view.refusal_rule;
        }
        if (pair.empty()) {
            return "";
        }
        if (m_trace.role == Role::Target && !m_loaded) {
            return "FO-MIG-TGT-01";
        }
        const auto state = m_model.primary_state(view.spec.id);
        if (state && *state == PrimaryState::Released) {
            return m_model.migration_state() == MigrationState::Completed ? "FO-MIG-SRC-06"
                                                                          : view.last_rule;
        }
        switch (ack_of(pair)) {
            case AckState::AckedWithoutBit:
                return "FO-NEG-03";
            case AckState::Reset:
                return "FO-NEG-04";
            default:
                return "FO-NEG-01";
        }
    }
    if (pair.empty()) {  // the model shows it
        return "";
    }
    if (!view.last_rule.empty()) {
        return view.last_rule;
    }
    const bool standby_exists =
        std::any_of(m_devices.begin(), m_devices.end(), [&pair](const DeviceView& other) {
            return other.spec.id == pair && other.spec.failover;
        });
    return standby_exists ? "FO-CFG-08" : "FO-CFG-04";
}

}  // namespace vnetct::reference_impl::detail
