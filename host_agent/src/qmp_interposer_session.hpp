// What the QMP interposer does with the lines of one client connection, with
// no I/O: lines in (from the client, from QEMU), bytes out (to QEMU, to the
// client), timed releases, and a record of every action taken. The socket
// loop in qmp_interposer.cpp feeds it and writes what it queues.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "vnetct/host_agent/json_line_channel.hpp"
#include "vnetct/host_agent/qmp_fault_plan.hpp"

namespace vnetct::host_agent {

// A rule's state over the interposer's life (kept across client connections:
// it follows QEMU, which outlives a client).
struct FaultRuleState {
    std::uint64_t acted = 0;
    bool armed = true;  // false until armed_by is seen, when the rule has one
    bool disarmed = false;
};

// One record of the action log: which rule did what to which message, plus
// any extra members ("original" for an edited reply, "command" for a reply).
using ActionRecorder = std::function<void(const std::string& rule, std::string_view action,
                                          const nlohmann::json& message, nlohmann::json extra)>;

class InterposerSession {
  public:
    // `states` has one entry per rule of `plan`; both outlive the session.
    InterposerSession(const FaultPlan& plan, std::vector<FaultRuleState>& states, ActionRecorder record);

    // One line, with its terminator, as it came.
    void from_client(const std::string& line);
    void from_upstream(const std::string& line);

    // Sends what is due at `now` (delayed events, forged events).
    void run_due(Clock::time_point now);
    // When run_due has something to do next; nullopt: nothing is waiting.
    [[nodiscard]] std::optional<Clock::time_point> next_due() const;

    // Bytes queued for each side since the last take.
    [[nodiscard]] std::string take_to_client();
    [[nodiscard]] std::string take_to_upstream();

  private:
    struct Scheduled {
        Clock::time_point due;
        std::uint64_t sequence = 0;  // keeps the order of equal due times
        std::size_t rule = 0;
        bool forged = false;  // a forged event (else a delayed event's release)
        std::string line;     // the delayed event's line as it came
        nlohmann::json message;  // the delayed event, or the forged event's name and data
    };

    // The first rule of `trigger` that is active and matches, if any.
    [[nodiscard]] std::optional<std::size_t> first_match(FaultTrigger trigger, std::string_view name,
                                                         const nlohmann::json& data) const;
    [[nodiscard]] bool active(std::size_t rule) const;
    void update_arming(std::string_view event, const nlohmann::json& data, bool arm);
    void event_from_upstream(const std::string& line, const nlohmann::json& message);
    void reply_from_upstream(const std::string& line, nlohmann::json message);
    // A reply has gone to the client: after the one to qmp_capabilities the
    // on_connect rules fire.
    void reply_sent(const nlohmann::json& reply);
    void forge(std::size_t rule);
    void send_forged(std::size_t rule, const ForgedEvent& event);
    void schedule(Scheduled entry);
    void record(std::size_t rule, std::string_view action, const nlohmann::json& message,
                nlohmann::json extra = nlohmann::json::object());
    [[nodiscard]] std::string line_of(const nlohmann::json& message) const;

    const FaultPlan& m_plan;
    std::vector<FaultRuleState>& m_states;
    ActionRecorder m_record;

    std::string m_to_client;
    std::string m_to_upstream;
    std::string m_eol = "\r\n";  // QEMU's line end, as last seen from it
    std::vector<Scheduled> m_scheduled;
    std::uint64_t m_next_sequence = 0;
    std::map<std::string, std::size_t> m_reply_edits;  // command id (JSON text) -> edit-reply rule
    std::optional<std::string> m_capabilities_id;      // id of the client's qmp_capabilities
    bool m_connected = false;                          // on_connect rules have fired
};

}  // namespace vnetct::host_agent
