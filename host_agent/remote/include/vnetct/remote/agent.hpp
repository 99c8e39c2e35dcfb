// The host agent daemon: the host side of vnetct where the host is remote
// (inside an L1 guest, issue 18). One byte stream to the harness (a
// virtio-serial port in L1; stdin/stdout or a socket in tests) carries JSON
// lines, several channels multiplexed over it: requests and replies, events,
// and the data of relays (a unix socket in L1 spoken to from L0) and of
// streamed process output. The protocol: host_agent/remote/PROTOCOL.md.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>

namespace vnetct::remote {

inline constexpr int kProtocolVersion = 1;
inline constexpr std::string_view kAgentName = "vnetct-host-agent";
// The virtio-serial port's name (QEMU: -device virtserialport,name=...).
inline constexpr std::string_view kPortName = "org.vnetct.host-agent";

struct RemoteOptions {
    std::filesystem::path sysfs_root = "/sys";
    std::string link_netns;                    // the VF link commands' network namespace (tests)
    std::size_t max_line_bytes = std::size_t{4} << 20;
    std::size_t window_bytes = std::size_t{256} << 10;     // per channel and direction
    std::size_t max_frame_bytes = std::size_t{48} << 10;   // channel data per line, before base64
    std::size_t max_file_chunk = std::size_t{2} << 20;     // write_file / read_file, per request
    std::size_t max_processes = 64;
    std::size_t max_channels = 64;
    double max_wait_seconds = 3600.0;
    // A virtio-serial port: reading nothing means the harness is not
    // connected (yet or any more), not the end: the agent waits for it and
    // greets it again. Otherwise (stdin, a socket) the end of input ends the agent.
    bool reconnecting = false;
};

// Serves the harness on `in_fd` / `out_fd` (may be the same fd) until the end
// of input (not `reconnecting`) or until `stop_fd` (>= 0) becomes readable;
// both fds are made non-blocking.
// Returns the exit code (0, or 1 when the stream failed). Children it
// spawned are killed when it returns.
[[nodiscard]] int serve(const RemoteOptions& options, int in_fd, int out_fd, int stop_fd);

}  // namespace vnetct::remote
