// A QMP fault interposer: a unix socket between the harness's QMP client and
// QEMU's monitor that makes a real QEMU look like a buggy one. Following a
// fault plan (qmp_fault_plan.hpp) it drops, delays (reorders) or forges
// events and edits or forges command replies; everything else passes through
// byte for byte.
//
// One client at a time is served, on a background thread: when a client
// connects, the interposer connects to QEMU's socket (retrying until it
// accepts, up to 30 s: QEMU may create it later) and relays line by line.
// When either side hangs up the other is closed, and the next client is
// accepted. A line over the size limit (QEMU's output is untrusted) closes
// both sides.
//
// Rules are tried in plan order; the first active rule matching a message
// acts on it (a rule whose count is used up, not yet armed or disarmed is
// passed over). on_connect rules all fire, in plan order. Counts and arming
// last for the interposer's life, across client connections. A rule acts on
// what comes after its armed_by event and before its disarmed_by event.
//
// The action log records {"host_ns", "rule", "action", "message"}: action
// "dropped", "delayed", "released", "forged" (message: the event), "replied"
// (message: the reply; "command": the command), "edited-reply" (message: the
// reply as forwarded; "original", "removed": elements removed). A connection
// the interposer closes on its own (oversized line, QEMU's socket never
// accepting) is recorded as {"rule": "", "action": "closed", "message": null,
// "reason": "..."}.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "vnetct/host_agent/errors.hpp"
#include "vnetct/host_agent/json_line_channel.hpp"

namespace vnetct::host_agent {

class QmpInterposer {
  public:
    // Checks `plan` (InvalidArgument naming the rule index and field), creates
    // the listening socket at `listen_path` (replacing a stale socket there)
    // and starts serving. Records also go as JSON lines to `log_path` unless
    // it is empty. `upstream_timeout` bounds the wait for QEMU's socket per
    // client.
    [[nodiscard]] static HostResult<QmpInterposer> start(
        const std::string& listen_path, const std::string& upstream_path, const nlohmann::json& plan,
        const std::string& log_path, std::size_t max_message_size = default_max_message_size,
        std::chrono::milliseconds upstream_timeout = std::chrono::seconds{30});

    QmpInterposer(QmpInterposer&& other) noexcept;
    QmpInterposer& operator=(QmpInterposer&& other) noexcept;
    QmpInterposer(const QmpInterposer&) = delete;
    QmpInterposer& operator=(const QmpInterposer&) = delete;
    ~QmpInterposer();

    // The action log so far, oldest first (a JSON array). Thread-safe.
    [[nodiscard]] nlohmann::json actions() const;

    // Closes the client, QEMU's connection and the listening socket (removing
    // it) and joins the thread. Idempotent.
    void stop();

    [[nodiscard]] const std::string& listen_path() const;

  private:
    struct Shared;
    explicit QmpInterposer(std::unique_ptr<Shared> shared);
    std::unique_ptr<Shared> m_shared;
};

}  // namespace vnetct::host_agent
