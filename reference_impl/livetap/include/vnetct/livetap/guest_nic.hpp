// The far end of the TAP as a guest NIC would be: it reads every frame from
// the queues, answers ARP for its address and sends every UDP datagram to its
// address back (addresses and ports swapped), so traffic meets a real endpoint
// across a hand-off. The source runs one on its queues, stops it before it
// offers them (LT-XFER-02) and the target starts one on the fds it received.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <thread>
#include <vector>

#include "vnetct/livetap/errors.hpp"
#include "vnetct/livetap/unique_fd.hpp"

namespace vnetct::livetap {

struct GuestIdentity {
    std::array<std::uint8_t, 6> mac{0x52, 0x54, 0x00, 0x6c, 0x74, 0x01};
    std::uint32_t ipv4 = 0xC6120002;  // 198.18.0.2, host byte order
    // false: a stream datagram (UdpStream's magic) is counted, not echoed
    // (a sink: the stream is judged by the seqs read, at half the work per
    // frame); any other datagram and ARP are still answered.
    bool echo_streams = true;
};

// The reply to one Ethernet frame (no vnet header): an ARP reply to a request
// for the guest's address, the echo of a UDP datagram to the guest's address;
// none for anything else (IPv4 options are kept, fragments ignored).
[[nodiscard]] std::optional<std::vector<std::uint8_t>> guest_reply(std::span<const std::uint8_t> frame,
                                                                   const GuestIdentity& identity);

// The sequence number of a host_agent UdpStream datagram (magic "VNCT" first
// in the UDP payload, seq at byte 12, network order) carried by `frame`.
[[nodiscard]] std::optional<std::uint32_t> stream_seq(std::span<const std::uint8_t> frame);

// The stream id (bytes 4..11 of the payload) and seq of such a datagram.
struct StreamDatagram {
    std::uint64_t stream_id = 0;
    std::uint32_t seq = 0;
};
[[nodiscard]] std::optional<StreamDatagram> stream_datagram(std::span<const std::uint8_t> frame);

// A run of consecutive seqs read one after the other: [first, last].
struct SeqRun {
    std::uint32_t first = 0;
    std::uint32_t last = 0;
    bool operator==(const SeqRun&) const = default;
};

// What one reader saw of one stream: its first and last seq, how many of
// its datagrams it read, and the seqs it read as runs in reading order (a
// stream read whole and in order is one run; a loss, a duplicate or a
// reordering starts another), at most kMaxSeqRuns of them.
struct StreamSeen {
    static constexpr std::size_t kMaxSeqRuns = 4096;
    std::uint32_t first_seq = 0;
    std::uint32_t last_seq = 0;
    std::uint64_t frames = 0;
    std::vector<SeqRun> runs;
    bool runs_truncated = false;  // more runs than kMaxSeqRuns: the record is incomplete

    // Counts `seq`, read after every seq counted before.
    void read(std::uint32_t seq);
    // Appends what a later reader of the same stream saw.
    void append(const StreamSeen& later);
};

struct GuestNicCounters {
    std::uint64_t frames = 0;       // read from the queues
    std::uint64_t udp_echoed = 0;   // UDP datagrams sent back
    std::uint64_t arp_replies = 0;  // ARP requests answered
    std::uint64_t write_errors = 0;
    std::optional<std::uint32_t> first_stream_seq;  // first and last stream datagram read
    std::optional<std::uint32_t> last_stream_seq;
    std::map<std::uint64_t, StreamSeen> streams;   // by stream id: per-flow first/last
    std::vector<std::uint64_t> frames_per_queue;  // in queue order
};

// The queues a reader serves (borrowed fds) and their vnet header size.
struct ReaderQueues {
    std::vector<int> fds;
    int vnet_hdr_size = 0;
};

class GuestNic {
  public:
    // What the reader thread runs before it reads: the last steps of a
    // hand-off, which yield the queues (or an error: then it never reads).
    using Arrival = std::function<LivetapResult<ReaderQueues>()>;

    // Starts a reader thread on `queue_fds` (borrowed: the caller keeps them
    // open while the NIC runs) and returns once it waits on them. Frames
    // carry a vnet header of `vnet_hdr_size` bytes (0: none); replies go out
    // with a zeroed one.
    [[nodiscard]] static LivetapResult<std::unique_ptr<GuestNic>> start(std::span<const int> queue_fds,
                                                                        int vnet_hdr_size, GuestIdentity identity);
    // Starts the reader thread at once; the thread runs `arrival` first and
    // reads the queues it returned from the moment it returns: no thread to
    // create nor to wake between a hand-off's Commit and the first read.
    // Returns once the thread polls them, or with `arrival`'s error (the
    // thread ended without reading). `arrival` bounds its own waits.
    [[nodiscard]] static LivetapResult<std::unique_ptr<GuestNic>> start_after(Arrival arrival, GuestIdentity identity);
    ~GuestNic();
    GuestNic(const GuestNic&) = delete;
    GuestNic& operator=(const GuestNic&) = delete;

    // No frame is read (nor answered) once it returns: a frame being read
    // is finished first, and the thread waits, unjoined, on its queues until
    // stop(). Takes no wake-up of the thread. Idempotent.
    void halt();
    // halt(), then the thread is woken and joined. Idempotent.
    void stop();
    // A consistent snapshot (taken under the counters' lock).
    [[nodiscard]] GuestNicCounters counters() const;
    // CLOCK_MONOTONIC ns: the thread was created; it was about to poll the
    // queues for the first time (from here on it reads; after the arrival).
    [[nodiscard]] std::int64_t spawned_ns() const { return m_spawned_ns; }
    [[nodiscard]] std::int64_t polling_ns() const { return m_polling_ns; }

  private:
    GuestNic(GuestIdentity identity, UniqueFd wake);
    void run(const Arrival& arrival, std::promise<LivetapResult<void>>& polling);

    std::vector<int> m_fds;  // from the arrival, before the first poll
    int m_vnet_hdr_size = 0;
    GuestIdentity m_identity;
    UniqueFd m_wake;  // eventfd: stop()
    struct Shared;
    std::unique_ptr<Shared> m_shared;
    std::thread m_thread;
    std::int64_t m_spawned_ns = 0;
    std::int64_t m_polling_ns = 0;  // written by the thread before start() returns
};

}  // namespace vnetct::livetap
