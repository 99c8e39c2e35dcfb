// The poll loop. Everything it decides is delegated to the pure parts
// (dispatch_request, LinkChangeDetector, LineBuffer, OutputQueue); this file
// only moves bytes between file descriptors.
#include "vnetct/guest_agent/agent.hpp"

#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <iostream>

#include "vnetct/guest_agent/clock.hpp"
#include "vnetct/guest_agent/ethtool.hpp"
#include "vnetct/guest_agent/json_line.hpp"
#include "vnetct/guest_agent/kernel.hpp"
#include "vnetct/guest_agent/line_buffer.hpp"
#include "vnetct/guest_agent/link_changes.hpp"
#include "vnetct/guest_agent/netdev_report.hpp"
#include "vnetct/guest_agent/output_queue.hpp"
#include "vnetct/guest_agent/requests.hpp"
#include "vnetct/guest_agent/rtnetlink.hpp"
#include "vnetct/guest_agent/udp_echo.hpp"
#include "vnetct/stop_signals.hpp"

namespace vnetct::guest_agent {
namespace {

using nlohmann::json;

constexpr std::int64_t kHangupRetryNs = 100'000'000;   // re-check a port nobody listens on
constexpr std::size_t kOutputCapacityBytes = 16U << 20;
constexpr std::size_t kMaxReadPerWakeup = 1U << 20;   // keep other fds served under a flood
constexpr std::int64_t kPortDiscoveryDeadlineNs = 5'000'000'000;

void log_line(const std::string& text) { std::cerr << "vnetct-guest-agent: " << text << std::endl; }

std::optional<std::string> interface_name(int ifindex) {
    std::array<char, IF_NAMESIZE> name{};
    if (::if_indextoname(static_cast<unsigned>(ifindex), name.data()) == nullptr) {
        return std::nullopt;
    }
    return std::string(name.data());
}

class Agent final : public AgentServices {
public:
    Agent(AgentOptions options, int port_fd, int signal_fd)
        : m_options(std::move(options)),
          m_port_fd(port_fd),
          m_signal_fd(signal_fd),
          m_input(kMaxLineBytes),
          m_output(kOutputCapacityBytes),
          m_detector(interface_name) {}

    int run();

    // AgentServices
    GuestResult<json> report() override { return build_netdev_report(m_options.sysfs_root, m_ethtool); }
    GuestResult<std::vector<std::string>> kernel_log() override { return read_kernel_log(); }
    GuestResult<std::vector<ModuleLoadOutcome>> load_modules(const std::vector<std::string>& names) override {
        return guest_agent::load_modules(m_options.modules_dir, names);
    }
    GuestResult<void> configure_ipv4(const std::string& ifname, const Ipv4Prefix& prefix) override {
        return guest_agent::configure_ipv4(ifname, prefix);
    }
    GuestResult<std::uint16_t> start_udp_echo(std::uint16_t port) override { return m_udp_echo.start(port); }
    std::int64_t monotonic_ns() override { return guest_agent::monotonic_ns(); }
    std::int64_t realtime_ns() override { return guest_agent::realtime_ns(); }
    std::string kernel_release() override { return guest_agent::kernel_release(); }
    GuestResult<void> set_realtime_ns(std::int64_t ns) override {
        const timespec value{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
        if (::clock_settime(CLOCK_REALTIME, &value) != 0) {
            return fail(GuestErrc::SystemCallFailed, describe_errno("clock_settime(CLOCK_REALTIME)", errno));
        }
        return {};
    }

private:
    void start_link_monitor();
    void start_dump();
    void read_link_messages();
    void read_port();
    void flush_output();
    void port_hung_up();

    AgentOptions m_options;
    int m_port_fd;
    int m_signal_fd;
    bool m_port_hung_up = false;
    bool m_wrote_since_hangup = false;  // the host saw output since it last went away
    bool m_hello_on_reconnect = false;
    std::int64_t m_port_retry_ns = 0;
    bool m_stop = false;

    LineBuffer m_input;
    OutputQueue m_output;
    SocketEthtool m_ethtool;
    UdpEchoService m_udp_echo;

    std::optional<LinkMonitor> m_link_monitor;
    LinkChangeDetector m_detector;
    std::uint32_t m_dump_sequence = 0;
    bool m_dump_in_progress = false;
    bool m_dump_is_resync = false;
    bool m_resync_pending = false;
    std::vector<LinkState> m_dump_states;
};

void Agent::start_link_monitor() {
    auto monitor = LinkMonitor::open();
    if (!monitor) {
        const std::string message = monitor.error().message();
        log_line(message);
        m_output.push(to_json_line(json{{"event", "agent-warning"}, {"message", message}}));
        return;
    }
    m_link_monitor.emplace(std::move(*monitor));
    start_dump();
}

void Agent::start_dump() {
    ++m_dump_sequence;
    m_dump_states.clear();
    if (auto requested = m_link_monitor->request_dump(m_dump_sequence); !requested) {
        log_line(requested.error().message());
        m_dump_in_progress = false;
        return;
    }
    m_dump_in_progress = true;
    m_dump_is_resync = m_resync_pending || m_dump_sequence > 1;
    m_resync_pending = false;
}

void Agent::read_link_messages() {
    auto outcome = m_link_monitor->read_pending();
    if (!outcome) {
        log_line(outcome.error().message());
        return;
    }
    const std::int64_t t_guest_ns = guest_agent::monotonic_ns();
    const std::int64_t t_guest_realtime_ns = realtime_ns();
    const auto emit = [&](const LinkEvent& event) {
        m_output.push(to_json_line(link_event_to_json(event, t_guest_ns, t_guest_realtime_ns)));
    };
    for (const LinkMessage& message : outcome->messages) {
        const bool ours = message.port_id == m_link_monitor->port_id() && message.port_id != 0;
        if (ours) {
            if (message.sequence != m_dump_sequence || !m_dump_in_progress) {
                continue;  // a reply to an abandoned dump
            }
            if (message.type == LinkMessage::Type::NewLink) {
                if (m_dump_is_resync) {
                    m_dump_states.push_back(*message.state);
                } else {
                    m_detector.seed(*message.state);
                }
            } else if (message.type == LinkMessage::Type::Done) {
                m_dump_in_progress = false;
                if (m_dump_is_resync) {
                    for (const LinkEvent& event : m_detector.resync(m_dump_states)) {
                        emit(event);
                    }
                }
            } else if (message.type == LinkMessage::Type::Error && message.error != 0) {
                m_dump_in_progress = false;  // EBUSY while an abandoned dump drains: retry
                m_resync_pending = true;
            }
            continue;
        }
        if (message.type == LinkMessage::Type::NewLink) {
            if (auto event = m_detector.on_new_link(*message.state)) {
                emit(*event);
            }
        } else if (message.type == LinkMessage::Type::DelLink) {
            if (auto event = m_detector.on_del_link(*message.state)) {
                emit(*event);
            }
        }
    }
    if (outcome->overrun) {
        m_output.push(to_json_line(json{{"event", "netlink-overrun"},
                                        {"t_guest_ns", t_guest_ns},
                                        {"t_guest_realtime_ns", t_guest_realtime_ns}}));
        m_resync_pending = true;
        m_dump_in_progress = false;
    }
    if (m_resync_pending && !m_dump_in_progress) {
        start_dump();
    }
}

void Agent::port_hung_up() {
    if (!m_port_hung_up) {
        m_input.clear();
        m_hello_on_reconnect = m_wrote_since_hangup;
        m_wrote_since_hangup = false;
    }
    m_port_hung_up = true;
    m_port_retry_ns = guest_agent::monotonic_ns() + kHangupRetryNs;
}

void Agent::read_port() {
    std::array<char, 65536> chunk{};
    std::size_t total = 0;
    std::vector<InputLine> lines;
    while (total < kMaxReadPerWakeup) {
        const ssize_t count = ::read(m_port_fd, chunk.data(), chunk.size());
        if (count < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                port_hung_up();  // EIO: a pty whose other side closed
            }
            break;
        }
        if (count == 0) {
            port_hung_up();  // virtio-serial: the host is not connected
            break;
        }
        total += static_cast<std::size_t>(count);
        m_input.append({chunk.data(), static_cast<std::size_t>(count)}, lines);
    }
    for (const InputLine& line : lines) {
        const auto replies = line.oversized ? std::vector<std::string>{oversized_line_reply(line.discarded_bytes)}
                                            : dispatch_request(line.text, *this);
        // Link changes the command caused (module loads, ip-config) go out before its reply.
        if (m_link_monitor) {
            read_link_messages();
        }
        for (const std::string& reply : replies) {
            m_output.push(reply);
        }
    }
}

void Agent::flush_output() {
    while (!m_output.empty()) {
        const std::string_view pending = m_output.unsent();
        const ssize_t count = ::write(m_port_fd, pending.data(), pending.size());
        if (count < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                port_hung_up();
            }
            return;
        }
        m_output.consume(static_cast<std::size_t>(count));
        m_wrote_since_hangup = true;
    }
}

int Agent::run() {
    m_output.push(to_json_line(hello_event(kernel_release(), guest_agent::monotonic_ns(), realtime_ns())));
    start_link_monitor();

    std::vector<pollfd> fds;
    while (!m_stop) {
        const std::int64_t now = guest_agent::monotonic_ns();
        const bool watch_port = !m_port_hung_up || now >= m_port_retry_ns;
        fds.clear();
        fds.push_back({m_signal_fd, POLLIN, 0});
        fds.push_back({watch_port ? m_port_fd : -1,
                       static_cast<short>(POLLIN | (m_output.empty() ? 0 : POLLOUT)), 0});
        fds.push_back({m_link_monitor ? m_link_monitor->fd() : -1, POLLIN, 0});
        for (const auto& [port, fd] : m_udp_echo.sockets()) {
            fds.push_back({fd, POLLIN, 0});
        }
        const int timeout_ms =
            watch_port ? -1 : static_cast<int>((m_port_retry_ns - now + 999'999) / 1'000'000);
        if (::poll(fds.data(), fds.size(), timeout_ms) < 0) {
            if (errno == EINTR) {
                continue;
            }
            log_line(describe_errno("poll", errno));
            return 1;
        }
        if (fds[0].revents != 0) {
            signalfd_siginfo signal_info{};
            if (::read(m_signal_fd, &signal_info, sizeof signal_info) == sizeof signal_info) {
                log_line(std::string("stopping on ") + strsignal(static_cast<int>(signal_info.ssi_signo)));
                m_stop = true;
            }
        }
        const short port_events = fds[1].revents;
        const bool port_hangup = (port_events & (POLLHUP | POLLERR)) != 0;
        if (port_events != 0 && !port_hangup && m_port_hung_up) {
            // A host that (re)connects after seeing earlier output gets a fresh hello.
            m_port_hung_up = false;
            if (m_hello_on_reconnect) {
                m_output.push(to_json_line(hello_event(kernel_release(), guest_agent::monotonic_ns(), realtime_ns())));
                m_hello_on_reconnect = false;
            }
        }
        if ((port_events & POLLIN) != 0) {
            read_port();  // a read of 0 / EIO marks the port hung up too
        }
        if (port_hangup) {
            port_hung_up();
        }
        if (!m_port_hung_up && !m_output.empty() && (port_events & POLLOUT) != 0) {
            flush_output();
        }
        if (fds[2].revents != 0 && m_link_monitor) {
            read_link_messages();
        }
        for (std::size_t i = 3; i < fds.size(); ++i) {
            if (fds[i].revents != 0) {
                m_udp_echo.echo_pending(fds[i].fd);
            }
        }
    }
    return 0;
}

GuestResult<std::filesystem::path> locate_port(const AgentOptions& options) {
    if (options.device) {
        return *options.device;
    }
    // The port is probed by a built-in driver during boot; allow it a short deadline.
    const std::int64_t deadline = guest_agent::monotonic_ns() + kPortDiscoveryDeadlineNs;
    for (;;) {
        auto port = find_agent_port(options.sysfs_root);
        if (port) {
            return ensure_port_device(options.sysfs_root, *port);
        }
        if (guest_agent::monotonic_ns() >= deadline) {
            return fail(port.error().code, port.error().detail + " (waited 5 s)");
        }
        ::poll(nullptr, 0, 100);
    }
}

}  // namespace

int run_agent(const AgentOptions& options) {
    const int signal_fd = vnetct::stop_signal_fd();
    if (signal_fd < 0) {
        log_line(describe_errno("signalfd", errno));
        return 1;
    }

    const auto device = locate_port(options);
    if (!device) {
        log_line(device.error().message());
        return 1;
    }
    const int port_fd = ::open(device->c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (port_fd < 0) {
        log_line(Error<GuestErrc>{GuestErrc::PortOpenFailed, describe_errno(device->string(), errno)}.message());
        return 1;
    }
    log_line("talking over " + device->string());
    Agent agent(options, port_fd, signal_fd);
    const int exit_code = agent.run();
    ::close(port_fd);
    ::close(signal_fd);
    return exit_code;
}

}  // namespace vnetct::guest_agent
