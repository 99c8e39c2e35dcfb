#include "vnetct/livetap/backend.hpp"

#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "vnetct/livetap/channel.hpp"
#include "vnetct/livetap/handoff_stamps.hpp"
#include "vnetct/livetap/realtime_window.hpp"

namespace vnetct::livetap {
namespace {

constexpr auto kHandOffBound = std::chrono::seconds(5);

void say(int out, const std::string& line) {
    const std::string text = line + "\n";
    (void)!write(out, text.data(), text.size());
}

// One line from `in`, without its newline; none at end of input.
std::optional<std::string> read_line(int in) {
    std::string line;
    char byte = 0;
    for (;;) {
        const ssize_t got = read(in, &byte, 1);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            return line.empty() ? std::nullopt : std::optional(line);
        }
        if (byte == '\n') {
            return line;
        }
        line += byte;
    }
}

LivetapResult<sockaddr_un> unix_address(const std::string& path) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof address.sun_path) {
        return fail(LivetapErrc::InvalidArgument, "socket path '" + path + "' is empty or too long");
    }
    std::memcpy(address.sun_path, path.c_str(), path.size());
    return address;
}

LivetapResult<UniqueFd> connect_to(const std::string& path) {
    auto address = unix_address(path);
    if (!address) {
        return tl::unexpected(address.error());
    }
    UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    if (!fd.valid() || connect(fd.get(), reinterpret_cast<const sockaddr*>(&*address), sizeof *address) != 0) {
        return fail(LivetapErrc::PeerClosed, "connect " + path + ": " + std::strerror(errno));
    }
    return fd;
}

std::string seq_text(const std::optional<std::uint32_t>& seq) { return seq ? std::to_string(*seq) : "-"; }

std::string times(std::int64_t stopped_ns, std::int64_t resumed_ns, const char* resumed_name = "resumed_reading_ns") {
    return " stopped_reading_ns=" + std::to_string(stopped_ns) + " " + resumed_name + "=" + std::to_string(resumed_ns);
}

std::optional<int> milliseconds_argument(const std::string& text) {
    try {
        std::size_t used = 0;
        const int value = std::stoi(text, &used);
        if (used == text.size() && value >= 0 && value <= 60000) {
            return value;
        }
    } catch (const std::exception&) {
    }
    return std::nullopt;
}

// The queues a backend owns (opened as the source, or received as the
// target) and the reader on them, with the counters of every reader that ran
// on them before the current one.
class ServedTap {
  public:
    ServedTap(GuestIdentity guest, std::optional<TapSpec> spec) : m_guest(guest), m_spec(std::move(spec)) {}

    // Only the source opens (LT-XFER-03: a target has no spec).
    LivetapResult<void> open() {
        if (!m_spec) {
            return fail(LivetapErrc::InvalidArgument, "a target never opens /dev/net/tun (LT-XFER-03)");
        }
        auto tap = open_tap(*m_spec);
        if (!tap) {
            return tl::unexpected(tap.error());
        }
        m_tap = std::move(*tap);
        return start_reading();
    }
    // The reader thread runs `arrival` (the target's side of a hand-off) and
    // reads what it yields from then on (GuestNic::start_after).
    LivetapResult<void> take_after(std::function<LivetapResult<IncomingBackend>()> arrival) {
        auto nic = GuestNic::start_after(
            [&]() -> LivetapResult<ReaderQueues> {
                auto incoming = arrival();
                if (!incoming) {
                    return tl::unexpected(incoming.error());
                }
                m_tap = OpenedTap{std::move(incoming->queues), incoming->state};  // before start_after returns
                return ReaderQueues{raw_fds(m_tap.queues), m_tap.state.vnet_hdr_size};
            },
            m_guest);
        if (!nic) {
            return tl::unexpected(nic.error());
        }
        m_nic = std::move(*nic);
        return {};
    }
    LivetapResult<void> start_reading() {
        auto nic = GuestNic::start(raw_fds(m_tap.queues), m_tap.state.vnet_hdr_size, m_guest);
        if (!nic) {
            return tl::unexpected(nic.error());
        }
        m_nic = std::move(*nic);
        return {};
    }
    // Not one read after this returns (LT-XFER-02); the time it returned.
    // The reader is halted, not yet joined: stop_reading() joins it.
    std::int64_t halt_reading() {
        if (m_nic) {
            m_nic->halt();
        }
        return monotonic_ns();
    }
    // Not one read after this returns (LT-XFER-02); the time it returned.
    std::int64_t stop_reading() {
        if (m_nic) {
            m_nic->stop();
            m_before = merge(m_before, m_nic->counters());
            m_nic.reset();
        }
        return monotonic_ns();
    }
    GuestNicCounters counters() const { return m_nic ? merge(m_before, m_nic->counters()) : m_before; }
    // The reader now running, if any.
    const GuestNic* reader() const { return m_nic.get(); }
    OpenedTap& tap() { return m_tap; }

    // TUNSETQUEUE on every queue: detach them all (the kernel purges what
    // they hold), then attach them again.
    LivetapResult<void> detach_and_attach() {
        for (const char* step : {"detach", "attach"}) {
            for (const auto& queue : m_tap.queues) {
                ifreq request{};
                request.ifr_flags = static_cast<short>(std::string(step) == "detach" ? IFF_DETACH_QUEUE : IFF_ATTACH_QUEUE);
                if (ioctl(queue.get(), TUNSETQUEUE, &request) != 0) {
                    return fail(LivetapErrc::Io, std::string("TUNSETQUEUE ") + step + ": " + std::strerror(errno));
                }
            }
        }
        return {};
    }

  private:
    GuestIdentity m_guest;
    std::optional<TapSpec> m_spec;
    OpenedTap m_tap;
    std::unique_ptr<GuestNic> m_nic;
    GuestNicCounters m_before;
};

}  // namespace

std::string describe(const GuestNicCounters& counters) {
    std::string queues;
    for (const auto frames : counters.frames_per_queue) {
        queues += (queues.empty() ? "" : ",") + std::to_string(frames);
    }
    std::string streams;
    std::string runs;
    for (const auto& [id, seen] : counters.streams) {
        char text[96];
        std::snprintf(text, sizeof text, "%s%016llx:%u-%u:%llu", streams.empty() ? "" : ";",
                      static_cast<unsigned long long>(id), seen.first_seq, seen.last_seq,
                      static_cast<unsigned long long>(seen.frames));
        streams += text;
        std::snprintf(text, sizeof text, "%s%016llx:", runs.empty() ? "" : ";", static_cast<unsigned long long>(id));
        runs += text;
        for (std::size_t i = 0; i < seen.runs.size(); ++i) {
            runs += (i == 0 ? "" : ",") + std::to_string(seen.runs[i].first) + "-" + std::to_string(seen.runs[i].last);
        }
        if (seen.runs_truncated) {
            runs += ",...";
        }
    }
    return "frames=" + std::to_string(counters.frames) + " echoed=" + std::to_string(counters.udp_echoed) +
           " first_seq=" + seq_text(counters.first_stream_seq) + " last_seq=" + seq_text(counters.last_stream_seq) +
           " arp=" + std::to_string(counters.arp_replies) + " write_errors=" + std::to_string(counters.write_errors) +
           " queue_frames=" + (queues.empty() ? "-" : queues) + " streams=" + (streams.empty() ? "-" : streams) +
           " runs=" + (runs.empty() ? "-" : runs);
}

GuestNicCounters merge(const GuestNicCounters& total, const GuestNicCounters& later) {
    GuestNicCounters merged = total;
    merged.frames += later.frames;
    merged.udp_echoed += later.udp_echoed;
    merged.arp_replies += later.arp_replies;
    merged.write_errors += later.write_errors;
    if (!merged.first_stream_seq) {
        merged.first_stream_seq = later.first_stream_seq;
    }
    if (later.last_stream_seq) {
        merged.last_stream_seq = later.last_stream_seq;
    }
    for (const auto& [id, seen] : later.streams) {
        merged.streams[id].append(seen);
    }
    if (merged.frames_per_queue.size() < later.frames_per_queue.size()) {
        merged.frames_per_queue.resize(later.frames_per_queue.size(), 0);
    }
    for (std::size_t queue = 0; queue < later.frames_per_queue.size(); ++queue) {
        merged.frames_per_queue[queue] += later.frames_per_queue[queue];
    }
    return merged;
}

namespace {

// CapEff of /proc/self/status ("?" if unreadable).
std::string effective_capabilities() {
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);) {
        if (line.starts_with("CapEff:")) {
            const auto start = line.find_first_not_of(" \t", 7);
            return start == std::string::npos ? "?" : line.substr(start);
        }
    }
    return "?";
}

struct HandOffChannel {
    bool unix_socket = true;
    std::string path;  // of a unix channel
};

HandOffChannel parse_channel(const std::string& text) {
    if (text.starts_with("tcp:")) {
        return {false, ""};
    }
    return {true, text.starts_with("unix:") ? text.substr(5) : text};
}

// A handoff that moves no fd (LT-CFG-01/04): the reason, told to a target
// behind a unix channel (LT-CFG-03), and the line to answer.
std::string hand_off_nothing(const HandOffChannel& channel, const TransferConfig& config) {
    const std::string why = check_target(config, true).error().detail;
    std::string line = "untransferred " + why;
    if (channel.unix_socket) {
        auto connected = connect_to(channel.path);
        auto told = connected ? announce_no_backend(connected->get(), why,
                                                    std::chrono::steady_clock::now() + kHandOffBound)
                              : LivetapResult<void>(tl::unexpected(connected.error()));
        if (!told) {
            line += " (the target was not told: " + told.error().message() + ")";
        }
    }
    return line;
}

// The command loop of a backend that serves its queues (the source from the
// start, a target once it took them): see backend.hpp. Returns the exit code.
int serve_commands(ServedTap& side, const TransferSwitches& switches, int control_in, int control_out,
                   const std::string& stopped_suffix, int read_after_commit_ms = 0, bool stop_before_connect = false) {
    while (auto line = read_line(control_in)) {
        const auto space = line->find(' ');
        const std::string command = line->substr(0, space);
        const std::string argument = space == std::string::npos ? "" : line->substr(space + 1);
        if (command == "handoff" && !argument.empty()) {
            const HandOffChannel target = parse_channel(argument);
            const TransferConfig config{switches.migration_parameter, switches.device_option, target.unix_socket};
            if (!transfers_fds(config)) {
                say(control_out, hand_off_nothing(target, config));
                continue;
            }
            HandOffStamps stamps;
            stamps.mark("command");
            if (stop_before_connect) {  // the seeded fault: the target's wake-up lands in the blackout
                stamps.mark("stopped", side.halt_reading());
            }
            // Connected while still reading, and the target said Ready: its
            // wake-up for the connection is outside the blackout.
            RealtimeWindow realtime(HandOffSide::Source);  // on its CPU from here, raised at the stop
            auto channel = connect_to(target.path);
            auto ready = channel ? await_ready(channel->get(), std::chrono::steady_clock::now() + kHandOffBound)
                                 : LivetapResult<void>(tl::unexpected(channel.error()));
            stamps.mark("target_ready");
            if (!ready) {
                if (stop_before_connect) {  // halted by the seeded fault: serve again
                    side.stop_reading();
                    if (auto resumed = side.start_reading(); !resumed) {
                        say(control_out, "failed " + resumed.error().message());
                        return 1;
                    }
                }
                say(control_out, "resumed " + ready.error().message());  // it never stopped reading
                continue;
            }
            realtime.raise();  // from the stop to the Commit
            stamps.mark("stopped", side.halt_reading());  // LT-XFER-02: not one read after this
            const std::int64_t stopped_ns = *stamps.at("stopped");
            const auto fds = raw_fds(side.tap().queues);
            LivetapResult<void> offered = offer_backend(channel->get(), side.tap().state, fds,
                                                        std::chrono::steady_clock::now() + kHandOffBound, &stamps);
            realtime.end();
            side.stop_reading();  // joins the halted reader, out of the blackout
            if (offered) {
                const std::int64_t committed_ns = monotonic_ns();
                const GuestNicCounters reported = side.counters();
                if (read_after_commit_ms > 0 && side.start_reading()) {  // the seeded bug: reads it no longer owns
                    std::this_thread::sleep_for(std::chrono::milliseconds(read_after_commit_ms));
                    side.stop_reading();
                }
                side.tap().queues.clear();
                say(control_out, "committed " + describe(reported) + times(stopped_ns, committed_ns, "committed_ns") +
                                     " stamps=" + stamps.describe() + " realtime=" + (realtime.taken() ? "1" : "0"));
                return 0;
            }
            // LT-XFER-04: the queues are still ours; serve them again.
            if (auto resumed = side.start_reading(); !resumed) {
                say(control_out, "failed " + resumed.error().message());
                return 1;
            }
            say(control_out, "resumed " + offered.error().message());
        } else if ((command == "pause" || command == "detach") && milliseconds_argument(argument)) {
            const std::int64_t stopped_ns = side.stop_reading();
            std::this_thread::sleep_for(std::chrono::milliseconds(*milliseconds_argument(argument)));
            auto detached = command == "detach" ? side.detach_and_attach() : LivetapResult<void>{};
            if (auto resumed = side.start_reading(); !resumed) {
                say(control_out, "failed " + resumed.error().message());
                return 1;
            }
            const std::int64_t resumed_ns = monotonic_ns();
            if (!detached) {
                say(control_out, "error " + detached.error().message());
            } else if (command == "detach") {
                say(control_out, "reattached queues=" + std::to_string(side.tap().queues.size()) + times(stopped_ns, resumed_ns));
            } else {
                say(control_out, "unpaused" + times(stopped_ns, resumed_ns));
            }
        } else if (command == "reopen" && (argument.empty() || milliseconds_argument(argument))) {
            const std::int64_t stopped_ns = side.stop_reading();
            std::this_thread::sleep_for(std::chrono::milliseconds(milliseconds_argument(argument).value_or(0)));
            side.tap().queues.clear();  // the close: queued frames are purged, uncounted
            if (auto opened = side.open(); !opened) {
                say(control_out, "failed " + opened.error().message());
                return 1;
            }
            say(control_out, "reopened " + describe(side.tap().state) + times(stopped_ns, monotonic_ns()));
        } else if (command == "counters" && argument.empty()) {
            say(control_out, "counters " + describe(side.counters()));
        } else {
            say(control_out, "error unknown command '" + *line + "'");
        }
    }
    side.stop_reading();
    say(control_out, "stopped " + describe(side.counters()) + stopped_suffix);
    return 0;
}

}  // namespace

int run_source(const SourceOptions& options, int control_in, int control_out) {
    ServedTap side(options.guest, options.tap);
    if (auto opened = side.open(); !opened) {
        say(control_out, "failed " + opened.error().message());
        return 1;
    }
    say(control_out, "ready " + describe(side.tap().state));
    return serve_commands(side, options.transfer, control_in, control_out, "", options.read_after_commit_ms,
                          options.stop_before_connect);
}

namespace {

// The source's connection, waited for until `timeout_ms` has passed (a source
// that never comes must not keep the target forever).
tl::expected<int, std::string> accept_within(int listener, int timeout_ms) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        pollfd entry{listener, POLLIN, 0};
        const int ready = left.count() > 0 ? poll(&entry, 1, static_cast<int>(left.count())) : 0;
        if (ready < 0 && errno == EINTR) {
            continue;
        }
        if (ready < 0) {
            return tl::unexpected(std::string("poll: ") + std::strerror(errno));
        }
        if (ready == 0) {
            return tl::unexpected("no source connected within " + std::to_string(timeout_ms) + " ms");
        }
        const int channel = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
        if (channel >= 0) {
            return channel;
        }
        if (errno != EINTR && errno != ECONNABORTED && errno != EAGAIN) {
            return tl::unexpected(std::string(std::strerror(errno)));
        }
    }
}

}  // namespace

int run_target(const TargetOptions& options, int control_in, int control_out) {
    if (auto netdev = check_tap_netdev(options.netdev); !netdev) {  // LT-CFG-02
        say(control_out, "failed " + netdev.error().message());
        return 1;
    }
    auto address = unix_address(options.listen_path);
    if (!address) {
        say(control_out, "failed " + address.error().message());
        return 1;
    }
    UniqueFd listener(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    unlink(options.listen_path.c_str());
    if (!listener.valid() ||
        bind(listener.get(), reinterpret_cast<const sockaddr*>(&*address), sizeof *address) != 0 ||
        listen(listener.get(), 1) != 0) {
        say(control_out, "failed listen " + options.listen_path + ": " + std::strerror(errno));
        return 1;
    }
    say(control_out, "listening " + options.listen_path + " uid=" + std::to_string(geteuid()) +
                         " cap_eff=" + effective_capabilities());
    auto accepted = accept_within(listener.get(), options.accept_timeout_ms);
    HandOffStamps stamps;
    stamps.mark("accepted");
    unlink(options.listen_path.c_str());
    if (!accepted) {
        say(control_out, "failed accept: " + accepted.error());
        return 1;
    }
    UniqueFd channel(*accepted);
    // The reader thread takes the hand-off from the Offer on: it reads from
    // the moment the Commit arrives, with no thread to create or wake then.
    ServedTap side(options.guest, std::nullopt);
    // The reader thread from its Ready to its first poll (ended once
    // take_after returned, which is after that poll).
    std::optional<RealtimeWindow> realtime;
    auto served = side.take_after([&]() -> LivetapResult<IncomingBackend> {
        prepare_validation();  // before the source stops reading
        const bool own_cpus = handoff_cpus_differ();  // of the process's CPUs, before the pinning
        realtime.emplace(HandOffSide::Target);        // before the Ready: it spins for the Offer
        realtime->raise();
        announce_ready(channel.get(), std::chrono::steady_clock::now() + kHandOffBound);
        auto incoming = receive_offer(channel.get(), std::chrono::steady_clock::now() + kHandOffBound, &stamps,
                                      realtime->taken() && !own_cpus ? std::chrono::microseconds(0) : handoff_spin);
        if (!incoming) {
            return incoming;
        }
        if (options.hold_offer_ms > 0) {
            say(control_out, "offered " + describe(incoming->state));
            std::this_thread::sleep_for(std::chrono::milliseconds(options.hold_offer_ms));
        }
        if (auto accepted = accept_offer(channel.get(), std::chrono::steady_clock::now() + kHandOffBound, &stamps);
            !accepted) {
            return tl::unexpected(accepted.error());
        }
        if (options.serve_delay_ms > 0) {
            std::this_thread::sleep_for(std::chrono::milliseconds(options.serve_delay_ms));
        }
        if (options.change_offloads && !incoming->queues.empty() &&  // the seeded bug: reconfigures, then lies
            ioctl(incoming->queues.front().get(), TUNSETOFFLOAD,
                  (incoming->state.offloads & TUN_F_CSUM) != 0 ? 0UL : static_cast<unsigned long>(TUN_F_CSUM)) != 0) {
            return fail(LivetapErrc::Io, std::string("TUNSETOFFLOAD: ") + std::strerror(errno));
        }
        return incoming;
    });
    const bool realtime_taken = realtime && realtime->taken();
    realtime.reset();
    if (!served) {
        say(control_out, "failed " + served.error().message());
        return 1;
    }
    const std::string state = describe(side.tap().state);
    // Serving from the moment its reader polls the queues.
    const std::int64_t serving_ns = side.reader()->polling_ns();
    stamps.mark("nic_spawned", side.reader()->spawned_ns());
    stamps.mark("reader_polling", serving_ns);
    say(control_out, "serving " + state + " serving_ns=" + std::to_string(serving_ns) + " stamps=" + stamps.describe() +
                         " realtime=" + (realtime_taken ? "1" : "0"));
    // It serves as the source did, and may hand the queues on in turn.
    return serve_commands(side, options.transfer, control_in, control_out, " serving_ns=" + std::to_string(serving_ns));
}

int backend_main(int argc, char** argv) {
    const std::vector<std::string> args(argv, argv + argc);
    auto usage = [] {
        say(2, "usage: livetap_backend source --netns NS --tap NAME [--queues N] [--multi-queue 0|1] "
               "[--vnet-hdr-size 10|12] [--offloads BITS] [--sndbuf BYTES] [--label TEXT]\n"
               "       livetap_backend target --listen PATH [--hold-offer-ms MS] [--serve-delay-ms MS] "
               "[--ifname NAME] [--vnet-hdr 0|1] [--fd N] [--seed-fault change-offloads] [--accept-timeout-ms MS]\n"
               "       either with [--transfer-parameter 0|1] [--transfer-device 0|1] [--echo-streams 0|1] "
               "[--label TEXT]");
        return 2;
    };
    if (args.empty() || args.size() % 2 == 0) {
        return usage();
    }
    SourceOptions source;
    TargetOptions target;
    try {
        for (std::size_t i = 1; i + 1 < args.size(); i += 2) {
            const std::string& key = args[i];
            const std::string& value = args[i + 1];
            if (key == "--netns") {
                source.tap.netns = value;
            } else if (key == "--tap") {
                source.tap.name = value;
            } else if (key == "--queues") {
                source.tap.queues = std::stoi(value);
            } else if (key == "--vnet-hdr-size") {
                source.tap.vnet_hdr_size = std::stoi(value);
            } else if (key == "--offloads") {
                source.tap.offloads = static_cast<std::uint32_t>(std::stoul(value, nullptr, 0));
            } else if (key == "--sndbuf") {
                source.tap.sndbuf = std::stoi(value);
            } else if (key == "--multi-queue") {
                source.tap.multi_queue = std::stoi(value) != 0;
            } else if (key == "--listen") {
                target.listen_path = value;
            } else if (key == "--accept-timeout-ms" && std::stoi(value) > 0) {
                target.accept_timeout_ms = std::stoi(value);
            } else if (key == "--hold-offer-ms") {
                target.hold_offer_ms = std::stoi(value);
            } else if (key == "--serve-delay-ms") {
                target.serve_delay_ms = std::stoi(value);
            } else if (key == "--transfer-parameter") {
                source.transfer.migration_parameter = target.transfer.migration_parameter = std::stoi(value) != 0;
            } else if (key == "--transfer-device") {
                source.transfer.device_option = target.transfer.device_option = std::stoi(value) != 0;
            } else if (key == "--ifname") {
                target.netdev.ifname = true;
            } else if (key == "--vnet-hdr") {
                target.netdev.vnet_hdr = std::stoi(value) != 0;
            } else if (key == "--fd") {
                target.netdev.fd = true;
            } else if (key == "--seed-fault" && value == "read-after-commit") {
                source.read_after_commit_ms = 200;
            } else if (key == "--seed-fault" && value == "stop-before-connect") {
                source.stop_before_connect = true;
            } else if (key == "--seed-fault" && value == "change-offloads") {
                target.change_offloads = true;
            } else if (key == "--echo-streams") {
                source.guest.echo_streams = target.guest.echo_streams = std::stoi(value) != 0;
            } else if (key == "--label") {
                // a tag for whoever looks for the process by its command line
            } else {
                return usage();
            }
        }
    } catch (const std::exception&) {
        return usage();
    }
    if (args[0] == "source" && !source.tap.name.empty()) {
        return run_source(source, 0, 1);
    }
    if (args[0] == "target" && !target.listen_path.empty()) {
        // A helper of whoever started it: it dies with it (setpriv, which may start it, clears the
        // parent-death signal its own parent set), and if that one is gone already, it does not start.
        const pid_t parent = getppid();
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {  // it died before the signal was asked for
            return 1;
        }
        return run_target(target, 0, 1);
    }
    return usage();
}

}  // namespace vnetct::livetap
