// The daemon's state and its poll loop (session.cpp), and the requests it
// answers (requests.cpp). Internal: tests drive it through serve().
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vnetct/host_agent/process.hpp"
#include "vnetct/remote/agent.hpp"
#include "vnetct/remote/request_reader.hpp"

namespace vnetct::remote {

using Clock = std::chrono::steady_clock;

// An error reply's code (the error enum's name, whichever module) and message.
struct ReplyError {
    std::string code;
    std::string message;
};
template <typename Errc>
ReplyError reply_error(const Error<Errc>& error) {
    return {std::string(name_of(error.code)), error.message()};
}
inline ReplyError reply_error(RemoteErrc code, std::string detail) {
    return reply_error(Error<RemoteErrc>{code, std::move(detail)});
}
// A reply's result now, nullopt when the reply comes later (wait, open_relay), or an error.
using Handled = tl::expected<std::optional<nlohmann::json>, ReplyError>;

enum class ChannelKind { Relay, Output };

struct Channel {
    int fd = -1;
    ChannelKind kind = ChannelKind::Relay;
    std::string what;              // "relay to /run/l2/qmp.sock", "process 3 stdout"
    std::size_t unacked = 0;       // sent to the harness, not yet acknowledged
    std::string to_fd;             // from the harness, not yet written to fd
};

struct PendingWait {
    nlohmann::json id;
    Clock::time_point deadline;
    double seconds = 0;
};

struct ProcessEntry {
    host_agent::Process process;
    std::string command;
    std::optional<host_agent::ExitStatus> status;
    std::vector<PendingWait> waits;
};

struct PendingRelay {
    nlohmann::json id;
    std::string path;
    Clock::time_point deadline;
    Clock::time_point next_try;
    double seconds = 0;
};

class Session {
  public:
    Session(const RemoteOptions& options, int in_fd, int out_fd) : m_options(options), m_in_fd(in_fd),
        m_out_fd(out_fd), m_reader(options.max_line_bytes) {}
    int run(int stop_fd);

  private:
    // session.cpp: the loop, the stream, channels, processes, timers
    void send(const nlohmann::json& message);
    void reply(const nlohmann::json& id, const Handled& handled);
    void read_stream();
    bool flush_stream();
    void harness_went_away();
    void read_channel(int id);
    void write_channel(int id);
    void close_channel(int id, const std::string& reason, bool notify);
    void channel_frame(const nlohmann::json& frame);
    void reap(int process_id);
    void run_timers();
    [[nodiscard]] int poll_timeout_ms() const;
    [[nodiscard]] bool output_full() const;

    // requests.cpp
    void dispatch(const nlohmann::json& message);
    Handled handle(const std::string& op, const nlohmann::json& id, const nlohmann::json& request);
    nlohmann::json hello() const;
    Handled spawn(const nlohmann::json& request);
    Handled signal(const nlohmann::json& request);
    Handled wait(const nlohmann::json& id, const nlohmann::json& request);
    Handled write_file(const nlohmann::json& request);
    Handled read_file(const nlohmann::json& request);
    Handled open_relay(const nlohmann::json& id, const nlohmann::json& request);
    Handled close_relay(const nlohmann::json& request);
    Handled sriov(const std::string& op, const nlohmann::json& request);
    // One attempt to connect a pending relay: true when it is settled (replied).
    bool try_relay(PendingRelay& relay);
    int add_channel(int fd, ChannelKind kind, std::string what);

    RemoteOptions m_options;
    int m_in_fd;
    int m_out_fd;
    RequestReader m_reader;
    std::string m_out;
    std::size_t m_out_offset = 0;
    bool m_harness_away = false;               // reconnecting: the port reads nothing
    Clock::time_point m_port_retry{};
    bool m_stop = false;
    int m_exit_code = 0;

    std::map<int, Channel> m_channels;
    std::map<int, ProcessEntry> m_processes;
    std::vector<PendingRelay> m_relays;
    int m_next_channel = 1;
    int m_next_process = 1;
};

}  // namespace vnetct::remote
