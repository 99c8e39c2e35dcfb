// A paced, sequence-numbered UDP stream to an echo server (the guest agent's
// UDP echo), and the record of its echoes: the evidence of loss across a
// migration or a hand-off. Counters on devices are only a second witness:
// queues can be purged without counting, sequence numbers cannot.
//
// Wire format (network byte order), padded with zeros to the payload size:
//   magic u32 | stream id u64 (random per stream) | seq u32 | sent_ns i64
// The echo server sends the payload back unchanged; the receiver keeps echoes
// with this stream's magic and id and counts anything else as foreign.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "vnetct/host_agent/errors.hpp"
#include "vnetct/host_agent/process.hpp"
#include "vnetct/host_agent/stream_analysis.hpp"

namespace vnetct::host_agent {

inline constexpr std::uint32_t stream_magic = 0x564e4354;  // "VNCT"
inline constexpr std::size_t stream_header_bytes = 4 + 8 + 4 + 8;
inline constexpr std::size_t max_udp_payload_bytes = 65507;  // IPv4

struct StreamHeader {
    std::uint32_t magic = stream_magic;
    std::uint64_t stream_id = 0;
    std::uint32_t seq = 0;
    std::int64_t sent_ns = 0;
};

// Writes the header into the first stream_header_bytes of `out` (which must
// hold at least that many).
void encode_stream_header(const StreamHeader& header, std::span<std::uint8_t> out);
// The header at the start of `datagram`, or none when it is shorter.
[[nodiscard]] std::optional<StreamHeader> decode_stream_header(std::span<const std::uint8_t> datagram);

// Echoes beyond one per packet (a duplicating network, or an echo server that
// replays: the guest is untrusted) that a stream keeps in its arrival record
// (16 bytes each): past them the receiver stops, and stop() gives Flooded.
inline constexpr std::uint64_t default_max_duplicate_echoes = std::uint64_t{1} << 20;

struct UdpStreamSpec {
    std::string address;                                           // IPv4, dotted quad
    int port = 0;                                                  // 1..65535
    double rate_pps = 0;                                           // > 0
    std::int64_t payload_bytes = 64;                               // stream_header_bytes..max_udp_payload_bytes
    std::int64_t count = 0;                                        // packets to send; 0: until stopped (at most 2^32)
    std::chrono::nanoseconds tick = std::chrono::milliseconds(1);  // the sender's pacing tick
    std::uint64_t max_duplicate_echoes = default_max_duplicate_echoes;
};

// Two threads on one socket: the sender wakes at every tick (clock_nanosleep
// to an absolute CLOCK_MONOTONIC time, no busy-waiting) and sends every packet
// due by then (rate * elapsed - sent, the first at once), stamping each with
// its send time; the receiver records every valid echo with its arrival time
// (CLOCK_MONOTONIC ns, Python's time.monotonic_ns()), duplicates included, in
// arrival order. A packet whose send fails (ENOBUFS, EHOSTUNREACH, ...) keeps
// its seq and sent time, so it counts as lost; the errno is counted.
// Control calls (start, stop_sending, stop) serialize among themselves; the
// waits and the readers may run alongside them from other threads.
class UdpStream {
  public:
    // Takes ownership of `socket_fd` (an open, unconnected AF_INET SOCK_DGRAM
    // socket, bound or not) and closes it, on failure too. InvalidArgument,
    // saying what is wrong, for a bad socket or spec.
    [[nodiscard]] static HostResult<UdpStream> create(int socket_fd, const UdpStreamSpec& spec);

    UdpStream(UdpStream&& other) noexcept;
    UdpStream& operator=(UdpStream&& other) noexcept;
    UdpStream(const UdpStream&) = delete;
    UdpStream& operator=(const UdpStream&) = delete;
    // Stops (without draining) and closes the socket.
    ~UdpStream();

    // Starts receiver and sender. Once only: InvalidArgument after a start or a stop.
    HostResult<void> start();

    // Stops the sender (within one tick) and waits for it; receiving goes on.
    void stop_sending();

    // Stops sending, keeps receiving for `drain`, then stops receiving and
    // joins both threads. Idempotent. Io if the receiver had to stop on an
    // error of its own (every later echo would have been missed); Flooded if
    // it stopped after spec().max_duplicate_echoes duplicate echoes.
    HostResult<void> stop(std::chrono::milliseconds drain = std::chrono::milliseconds(0));

    // Whether `count` distinct packets have been echoed by `deadline` (false
    // at once when the receiver has stopped short of it).
    [[nodiscard]] bool wait_received(std::uint64_t count, Deadline deadline) const;
    // Whether `count` datagrams have been handed to the socket by `deadline`
    // (false at once when the sender finished short of it): the stream's own
    // clock, for a receiver that does not echo.
    [[nodiscard]] bool wait_sent(std::uint64_t count, Deadline deadline) const;
    // Whether the sender has finished (its count sent, or stopped) by `deadline`.
    [[nodiscard]] bool wait_sending_done(Deadline deadline) const;

    [[nodiscard]] std::uint64_t stream_id() const;
    [[nodiscard]] const UdpStreamSpec& spec() const;
    // Packets sent so far (sequence numbers used, failed sends included).
    [[nodiscard]] std::uint64_t sent() const;
    // Distinct sequence numbers echoed so far.
    [[nodiscard]] std::uint64_t received() const;
    // Datagrams that arrived on the socket and were not an echo of this stream.
    [[nodiscard]] std::uint64_t foreign() const;
    // sent_ns of every packet, indexed by seq.
    [[nodiscard]] std::vector<std::int64_t> sent_times() const;
    // Every valid echo, in arrival order (duplicates kept).
    [[nodiscard]] std::vector<EchoArrival> arrivals() const;
    // Failed sends by errno.
    [[nodiscard]] std::map<int, std::uint64_t> send_errors() const;

  private:
    struct Shared;  // what the threads and the caller share
    explicit UdpStream(std::unique_ptr<Shared> shared);
    std::unique_ptr<Shared> m_shared;
};

}  // namespace vnetct::host_agent
