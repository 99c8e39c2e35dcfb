#include "vnetct/livetap/guest_nic.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <future>
#include <mutex>

#include "vnetct/livetap/handoff_stamps.hpp"

namespace vnetct::livetap {
namespace {

constexpr std::size_t kEthernetHeader = 14;
constexpr std::uint16_t kEtherTypeIpv4 = 0x0800;
constexpr std::uint16_t kEtherTypeArp = 0x0806;
constexpr std::uint8_t kProtocolUdp = 17;
constexpr std::uint32_t kStreamMagic = 0x564e4354;  // host_agent's stream_magic, "VNCT"
constexpr int kBatch = 64;  // frames read per queue and wake-up
constexpr int kMaxVnetHeader = 64;

std::uint16_t be16(std::span<const std::uint8_t> bytes, std::size_t at) {
    return static_cast<std::uint16_t>(bytes[at] << 8 | bytes[at + 1]);
}
std::uint32_t be32(std::span<const std::uint8_t> bytes, std::size_t at) {
    return static_cast<std::uint32_t>(bytes[at]) << 24 | static_cast<std::uint32_t>(bytes[at + 1]) << 16 |
           static_cast<std::uint32_t>(bytes[at + 2]) << 8 | bytes[at + 3];
}
void put_be16(std::vector<std::uint8_t>& bytes, std::size_t at, std::uint16_t value) {
    bytes[at] = static_cast<std::uint8_t>(value >> 8);
    bytes[at + 1] = static_cast<std::uint8_t>(value);
}
void put_be32(std::vector<std::uint8_t>& bytes, std::size_t at, std::uint32_t value) {
    for (int i = 0; i < 4; ++i) {
        bytes[at + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(value >> (24 - 8 * i));
    }
}

std::uint16_t ipv4_checksum(std::span<const std::uint8_t> header) {
    std::uint32_t sum = 0;
    for (std::size_t i = 0; i + 1 < header.size(); i += 2) {
        sum += be16(header, i);
    }
    while (sum >> 16 != 0) {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    return static_cast<std::uint16_t>(~sum);
}

// Where the UDP header starts in an IPv4/UDP frame to `address`, if it is one.
std::optional<std::size_t> udp_offset(std::span<const std::uint8_t> frame, std::optional<std::uint32_t> address) {
    if (frame.size() < kEthernetHeader + 20 || be16(frame, 12) != kEtherTypeIpv4) {
        return std::nullopt;
    }
    const auto ip = frame.subspan(kEthernetHeader);
    const std::size_t header_length = static_cast<std::size_t>(ip[0] & 0x0F) * 4;
    if ((ip[0] >> 4) != 4 || header_length < 20 || ip.size() < header_length + 8 || ip[9] != kProtocolUdp) {
        return std::nullopt;
    }
    if ((be16(ip, 6) & 0x3FFF) != 0) {  // a fragment (MF set or an offset)
        return std::nullopt;
    }
    if (address && be32(ip, 16) != *address) {
        return std::nullopt;
    }
    return kEthernetHeader + header_length;
}

std::optional<std::vector<std::uint8_t>> arp_reply(std::span<const std::uint8_t> frame, const GuestIdentity& me) {
    if (frame.size() < kEthernetHeader + 28) {
        return std::nullopt;
    }
    const auto arp = frame.subspan(kEthernetHeader);
    // Ethernet/IPv4 request (op 1) for our address.
    if (be16(arp, 0) != 1 || be16(arp, 2) != kEtherTypeIpv4 || arp[4] != 6 || arp[5] != 4 || be16(arp, 6) != 1 ||
        be32(arp, 24) != me.ipv4) {
        return std::nullopt;
    }
    std::vector<std::uint8_t> reply(kEthernetHeader + 28, 0);
    std::copy_n(arp.begin() + 8, 6, reply.begin());  // to the sender's hardware address
    std::copy(me.mac.begin(), me.mac.end(), reply.begin() + 6);
    put_be16(reply, 12, kEtherTypeArp);
    put_be16(reply, 14, 1);
    put_be16(reply, 16, kEtherTypeIpv4);
    reply[18] = 6;
    reply[19] = 4;
    put_be16(reply, 20, 2);  // reply
    std::copy(me.mac.begin(), me.mac.end(), reply.begin() + 22);
    put_be32(reply, 28, me.ipv4);
    std::copy_n(arp.begin() + 8, 10, reply.begin() + 32);  // the requester's MAC and address
    return reply;
}

}  // namespace

std::optional<std::vector<std::uint8_t>> guest_reply(std::span<const std::uint8_t> frame,
                                                     const GuestIdentity& identity) {
    if (frame.size() >= kEthernetHeader && be16(frame, 12) == kEtherTypeArp) {
        return arp_reply(frame, identity);
    }
    const auto udp = udp_offset(frame, identity.ipv4);
    if (!udp) {
        return std::nullopt;
    }
    const std::size_t ip = kEthernetHeader;
    const std::size_t ip_total = be16(frame, ip + 2);
    if (ip_total < *udp - ip + 8 || ip + ip_total > frame.size()) {
        return std::nullopt;
    }
    std::vector<std::uint8_t> reply(frame.begin(), frame.begin() + static_cast<std::ptrdiff_t>(ip + ip_total));
    std::copy_n(frame.begin() + 6, 6, reply.begin());  // back to the sender
    std::copy(identity.mac.begin(), identity.mac.end(), reply.begin() + 6);
    std::copy_n(frame.begin() + static_cast<std::ptrdiff_t>(ip + 12), 4, reply.begin() + static_cast<std::ptrdiff_t>(ip + 16));
    put_be32(reply, ip + 12, identity.ipv4);
    reply[ip + 8] = 64;  // TTL
    put_be16(reply, ip + 10, 0);
    put_be16(reply, ip + 10, ipv4_checksum(std::span(reply).subspan(ip, *udp - ip)));
    put_be16(reply, *udp, be16(frame, *udp + 2));
    put_be16(reply, *udp + 2, be16(frame, *udp));
    put_be16(reply, *udp + 6, 0);  // no UDP checksum (allowed over IPv4)
    return reply;
}

std::optional<StreamDatagram> stream_datagram(std::span<const std::uint8_t> frame) {
    const auto udp = udp_offset(frame, std::nullopt);
    if (!udp || frame.size() < *udp + 8 + 16 || be32(frame, *udp + 8) != kStreamMagic) {
        return std::nullopt;
    }
    const std::uint64_t id = static_cast<std::uint64_t>(be32(frame, *udp + 8 + 4)) << 32 | be32(frame, *udp + 8 + 8);
    return StreamDatagram{id, be32(frame, *udp + 8 + 12)};
}

void StreamSeen::read(std::uint32_t seq) {
    if (frames == 0) {
        first_seq = seq;
    }
    last_seq = seq;
    ++frames;
    if (!runs.empty() && runs.back().last + 1 == seq && seq != 0) {
        runs.back().last = seq;
    } else if (runs.size() < kMaxSeqRuns) {
        runs.push_back({seq, seq});
    } else {
        runs_truncated = true;
    }
}

void StreamSeen::append(const StreamSeen& later) {
    if (later.frames == 0) {
        return;
    }
    if (frames == 0) {
        *this = later;
        return;
    }
    last_seq = later.last_seq;
    frames += later.frames;
    runs_truncated = runs_truncated || later.runs_truncated;
    for (const SeqRun& run : later.runs) {
        if (!runs.empty() && runs.back().last + 1 == run.first && run.first != 0) {
            runs.back().last = run.last;
        } else if (runs.size() < kMaxSeqRuns) {
            runs.push_back(run);
        } else {
            runs_truncated = true;
        }
    }
}

std::optional<std::uint32_t> stream_seq(std::span<const std::uint8_t> frame) {
    const auto datagram = stream_datagram(frame);
    return datagram ? std::optional(datagram->seq) : std::nullopt;
}

struct GuestNic::Shared {
    mutable std::mutex mutex;  // held while a frame is read, answered and counted
    GuestNicCounters counters;
    bool halted = false;  // halt(): no read begins after it
};

namespace {

LivetapResult<void> check_queues(const ReaderQueues& queues) {
    if (queues.fds.empty() || queues.vnet_hdr_size < 0 || queues.vnet_hdr_size > kMaxVnetHeader) {
        return fail(LivetapErrc::InvalidArgument, std::to_string(queues.fds.size()) + " queues, vnet header of " +
                                                      std::to_string(queues.vnet_hdr_size) + " bytes");
    }
    return {};
}

}  // namespace

LivetapResult<std::unique_ptr<GuestNic>> GuestNic::start(std::span<const int> queue_fds, int vnet_hdr_size,
                                                         GuestIdentity identity) {
    ReaderQueues queues{{queue_fds.begin(), queue_fds.end()}, vnet_hdr_size};
    if (auto valid = check_queues(queues); !valid) {
        return tl::unexpected(valid.error());
    }
    return start_after([queues] { return LivetapResult<ReaderQueues>(queues); }, identity);
}

LivetapResult<std::unique_ptr<GuestNic>> GuestNic::start_after(Arrival arrival, GuestIdentity identity) {
    UniqueFd wake(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake.valid()) {
        return fail(LivetapErrc::Io, std::string("eventfd: ") + std::strerror(errno));
    }
    std::unique_ptr<GuestNic> nic(new GuestNic(identity, std::move(wake)));
    std::promise<LivetapResult<void>> polling;
    auto armed = polling.get_future();
    nic->m_thread = std::thread([raw = nic.get(), &polling, arrival = std::move(arrival)] {
        raw->run(arrival, polling);
    });
    nic->m_spawned_ns = monotonic_ns();
    // Bounded by `arrival`'s own deadlines: the thread sets the promise once
    // it returned, before it polls.
    auto started = armed.get();
    if (!started) {
        nic->m_thread.join();  // it ended without reading
        return tl::unexpected(started.error());
    }
    return nic;
}

GuestNic::GuestNic(GuestIdentity identity, UniqueFd wake)
    : m_identity(identity), m_wake(std::move(wake)), m_shared(std::make_unique<Shared>()) {}

GuestNic::~GuestNic() { stop(); }

void GuestNic::halt() {
    std::lock_guard lock(m_shared->mutex);
    m_shared->halted = true;
}

void GuestNic::stop() {
    if (m_thread.joinable()) {
        halt();
        const std::uint64_t one = 1;
        (void)!write(m_wake.get(), &one, sizeof one);
        m_thread.join();
    }
}

GuestNicCounters GuestNic::counters() const {
    std::lock_guard lock(m_shared->mutex);
    return m_shared->counters;
}

void GuestNic::run(const Arrival& arrival, std::promise<LivetapResult<void>>& polling) {
    // Allocated and touched before the arrival: a new thread's first large
    // allocation makes its malloc arena, and the pages fault in when zeroed,
    // ~100 us that would fall between a hand-off's Commit and the first read.
    std::vector<std::uint8_t> buffer(kMaxVnetHeader + 65536);
    auto queues = arrival();
    if (queues) {
        if (auto valid = check_queues(*queues); !valid) {
            queues = tl::unexpected(valid.error());
        }
    }
    if (!queues) {
        polling.set_value(tl::unexpected(queues.error()));
        return;
    }
    m_fds = std::move(queues->fds);
    m_vnet_hdr_size = queues->vnet_hdr_size;
    {
        std::lock_guard lock(m_shared->mutex);
        m_shared->counters.frames_per_queue.assign(m_fds.size(), 0);
    }
    std::vector<pollfd> entries;
    for (int fd : m_fds) {
        // A file status flag of the open queue (shared with every holder of
        // it), not a setting of the device: the reader drains without blocking.
        const int flags = fcntl(fd, F_GETFL);
        if (flags >= 0 && (flags & O_NONBLOCK) == 0) {
            (void)fcntl(fd, F_SETFL, flags | O_NONBLOCK);
        }
        entries.push_back({fd, POLLIN, 0});
    }
    entries.push_back({m_wake.get(), POLLIN, 0});
    const auto header = static_cast<std::size_t>(m_vnet_hdr_size);
    m_polling_ns = monotonic_ns();
    polling.set_value({});
    for (;;) {
        if (poll(entries.data(), entries.size(), -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            return;
        }
        if (entries.back().revents != 0) {
            return;  // stop(): not one more read
        }
        for (std::size_t queue = 0; queue < m_fds.size(); ++queue) {
            if ((entries[queue].revents & POLLIN) == 0) {
                continue;
            }
          // Drain up to a batch per wake-up (the queues are non-blocking): one
          // poll per batch, not per frame. The stop checks come first: the
          // eventfd above, and before every read the halt, under the lock that
          // halt() takes (a frame is read, answered and counted under it).
          for (int batch = 0; batch < kBatch; ++batch) {
            std::lock_guard lock(m_shared->mutex);
            if (m_shared->halted) {
                return;
            }
            const ssize_t size = read(m_fds[queue], buffer.data(), buffer.size());
            if (size < 0) {
                break;  // EAGAIN: drained (or an error poll will report again)
            }
            if (size < static_cast<ssize_t>(header)) {
                continue;
            }
            const auto frame = std::span<const std::uint8_t>(buffer).subspan(header, static_cast<std::size_t>(size) - header);
            const auto datagram = stream_datagram(frame);
            auto reply = datagram && !m_identity.echo_streams ? std::nullopt : guest_reply(frame, m_identity);
            bool written = false;
            if (reply) {
                reply->insert(reply->begin(), header, 0);
                written = write(m_fds[queue], reply->data(), reply->size()) == static_cast<ssize_t>(reply->size());
            }
            auto& counters = m_shared->counters;
            ++counters.frames;
            ++counters.frames_per_queue[queue];
            if (datagram) {
                if (!counters.first_stream_seq) {
                    counters.first_stream_seq = datagram->seq;
                }
                counters.last_stream_seq = datagram->seq;
                counters.streams[datagram->stream_id].read(datagram->seq);
            }
            if (reply && !written) {
                ++counters.write_errors;
            } else if (reply && frame.size() >= 14 && be16(frame, 12) == kEtherTypeArp) {
                ++counters.arp_replies;
            } else if (reply) {
                ++counters.udp_echoed;
            }
          }
        }
    }
}

}  // namespace vnetct::livetap
