// The fault plan of the QMP interposer (qmp_interposer.hpp): rules that make a
// real QEMU look like a buggy one, read from JSON and checked before use, and
// the JSON matching and editing the rules do.
//
//   {"rules": [{"name": "...", <trigger>, "action": "...", <action fields>,
//               "count": N, "armed_by": {...}, "disarmed_by": {...}}, ...]}
//
// Trigger, exactly one of: "event": NAME (+ "data": subset), "command": NAME
// (+ "arguments": subset), "on_connect": true.
// Actions: "drop" and "delay" ("ms") for events; "forge" ("forge": [{"event",
// "data"}], "after_ms", "drop_trigger" for events) for any trigger;
// "edit-reply" ("set", "remove") and "reply" ("return", and optionally
// "forge"/"after_ms": the events a host would send after such an answer) for
// commands. Arming follows what the harness sees: a forged event arms and
// disarms rules as a real one does.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "vnetct/host_agent/errors.hpp"

namespace vnetct::host_agent {

// X(Name, the plan's spelling)
#define VNETCT_FAULT_TRIGGERS(X) \
    X(Event, "event")            \
    X(Command, "command")        \
    X(OnConnect, "on_connect")
VNETCT_DEFINE_ENUM(FaultTrigger, VNETCT_FAULT_TRIGGERS)

#define VNETCT_FAULT_ACTIONS(X) \
    X(Drop, "drop")             \
    X(Delay, "delay")           \
    X(Forge, "forge")           \
    X(EditReply, "edit-reply")  \
    X(Reply, "reply")
VNETCT_DEFINE_ENUM(FaultAction, VNETCT_FAULT_ACTIONS)

// An event from QEMU named `name` whose data contains `data` (null: any data).
struct EventPattern {
    std::string name;
    nlohmann::json data;

    [[nodiscard]] bool matches(std::string_view event, const nlohmann::json& event_data) const;
};

// An event the interposer sends on its own; `data` null: no "data" member.
struct ForgedEvent {
    std::string name;
    nlohmann::json data;
};

struct FaultRule {
    std::string name;
    FaultTrigger trigger = FaultTrigger::Event;
    std::string message_name;  // the event's or the command's name (empty for on_connect)
    nlohmann::json subset;     // "data" or "arguments" subset; null: any
    FaultAction action = FaultAction::Drop;

    std::chrono::milliseconds delay{0};  // delay: "ms"
    std::vector<ForgedEvent> forge;      // forge; reply: events sent after the answer
    std::chrono::milliseconds forge_after{0};
    bool drop_trigger = false;
    nlohmann::json set;     // edit-reply: keys merged into the returned object (null: none)
    nlohmann::json remove;  // edit-reply: array elements containing this go (null: none)
    nlohmann::json reply;   // reply: the "return" value

    std::optional<std::uint64_t> count;  // acts on the first `count` matches only
    std::optional<EventPattern> armed_by;
    std::optional<EventPattern> disarmed_by;
};

struct FaultPlan {
    std::vector<FaultRule> rules;
};

// Reads and checks a plan. A bad plan is InvalidArgument naming the rule's
// index and the field, and what was expected there.
[[nodiscard]] HostResult<FaultPlan> parse_fault_plan(const nlohmann::json& plan);

// True when `subset` is null, or `value` contains it: for an object subset,
// `value` is an object with every key of the subset whose value contains the
// subset's value (recursively); anything else compares equal.
[[nodiscard]] bool json_contains(const nlohmann::json& value, const nlohmann::json& subset);

// Removes, at any depth of `value`, every array element that is an object
// containing `subset`. Returns how many were removed.
std::size_t remove_containing(nlohmann::json& value, const nlohmann::json& subset);

}  // namespace vnetct::host_agent
