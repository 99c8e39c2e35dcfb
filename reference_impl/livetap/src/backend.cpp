#include "vnetct/livetap/backend.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include "vnetct/livetap/channel.hpp"

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

}  // namespace

int run_source(const SourceOptions& options, int control_in, int control_out) {
    auto tap = open_tap(options.tap);
    if (!tap) {
        say(control_out, "failed " + tap.error().message());
        return 1;
    }
    const auto fds = raw_fds(tap->queues);
    auto nic = GuestNic::start(fds, tap->state.vnet_hdr_size, options.guest);
    if (!nic) {
        say(control_out, "failed " + nic.error().message());
        return 1;
    }
    say(control_out, "ready " + describe(tap->state));
    while (auto line = read_line(control_in)) {
        const std::string command = "handoff ";
        if (line->rfind(command, 0) != 0) {
            say(control_out, "unknown command '" + *line + "'");
            continue;
        }
        (*nic)->stop();  // LT-XFER-02: not one read after this
        auto channel = connect_to(line->substr(command.size()));
        LivetapResult<void> offered = channel ? offer_backend(channel->get(), tap->state, fds,
                                                              std::chrono::steady_clock::now() + kHandOffBound)
                                              : tl::unexpected(channel.error());
        if (offered) {
            tap->queues.clear();
            say(control_out, "committed");
            return 0;
        }
        // LT-XFER-04: the queues are still ours; serve them again.
        nic = GuestNic::start(fds, tap->state.vnet_hdr_size, options.guest);
        if (!nic) {
            say(control_out, "failed " + nic.error().message());
            return 1;
        }
        say(control_out, "resumed " + offered.error().message());
    }
    return 0;
}

int run_target(const TargetOptions& options, int control_in, int control_out) {
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
    say(control_out, "listening " + options.listen_path);
    UniqueFd channel(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    unlink(options.listen_path.c_str());
    if (!channel.valid()) {
        say(control_out, std::string("failed accept: ") + std::strerror(errno));
        return 1;
    }
    auto incoming = receive_backend(channel.get(), std::chrono::steady_clock::now() + kHandOffBound);
    if (!incoming) {
        say(control_out, "failed " + incoming.error().message());
        return 1;
    }
    auto nic = GuestNic::start(raw_fds(incoming->queues), incoming->state.vnet_hdr_size, options.guest);
    if (!nic) {
        say(control_out, "failed " + nic.error().message());
        return 1;
    }
    say(control_out, "serving " + describe(incoming->state));
    while (read_line(control_in)) {
    }
    (*nic)->stop();
    const auto counters = (*nic)->counters();
    say(control_out, "stopped frames=" + std::to_string(counters.frames) + " echoed=" +
                         std::to_string(counters.udp_echoed) + " first_seq=" + seq_text(counters.first_stream_seq));
    return 0;
}

int backend_main(int argc, char** argv) {
    const std::vector<std::string> args(argv, argv + argc);
    auto usage = [] {
        say(2, "usage: livetap_backend source --netns NS --tap NAME [--queues N] [--vnet-hdr-size 10|12] "
               "[--offloads BITS]\n       livetap_backend target --listen PATH");
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
            } else if (key == "--listen") {
                target.listen_path = value;
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
        return run_target(target, 0, 1);
    }
    return usage();
}

}  // namespace vnetct::livetap
