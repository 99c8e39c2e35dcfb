#include "vnetct/host_agent/udp_stream.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <limits>
#include <mutex>
#include <random>
#include <system_error>
#include <thread>

#include "vnetct/host_agent/transcript.hpp"

namespace vnetct::host_agent {

using HostError = Error<HostErrc>;

namespace {

// Datagrams per sendmmsg/recvmmsg call.
constexpr std::size_t batch_size = 64;
constexpr std::uint64_t max_packets = std::uint64_t{1} << 32;  // seq is 32 bits
// Asked of the kernel for the receive queue, so a short stall of the receiver
// at a high rate is not mistaken for loss on the wire (capped by rmem_max
// unless we may force it).
constexpr int receive_buffer_bytes = 8 * 1024 * 1024;
constexpr std::int64_t receive_forever = std::numeric_limits<std::int64_t>::max();

std::string errno_text(int error) { return std::strerror(error); }

template <typename Unsigned>
void put_big_endian(Unsigned value, std::uint8_t* out) {
    for (std::size_t i = 0; i < sizeof value; ++i) {
        out[i] = static_cast<std::uint8_t>(value >> (8 * (sizeof value - 1 - i)));
    }
}

template <typename Unsigned>
Unsigned get_big_endian(const std::uint8_t* in) {
    Unsigned value = 0;
    for (std::size_t i = 0; i < sizeof value; ++i) {
        value = static_cast<Unsigned>(value << 8) | in[i];
    }
    return value;
}

void sleep_until_ns(std::int64_t wake_ns) {
    const timespec wake{static_cast<time_t>(wake_ns / 1'000'000'000), static_cast<long>(wake_ns % 1'000'000'000)};
    while (::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &wake, nullptr) == EINTR) {
    }
}

HostResult<void> check_spec(const UdpStreamSpec& spec) {
    if (!(spec.rate_pps > 0) || !std::isfinite(spec.rate_pps)) {
        return fail(HostErrc::InvalidArgument,
                    "rate must be a positive number of packets/s, got " + std::to_string(spec.rate_pps));
    }
    if (spec.payload_bytes < static_cast<std::int64_t>(stream_header_bytes) ||
        spec.payload_bytes > static_cast<std::int64_t>(max_udp_payload_bytes)) {
        return fail(HostErrc::InvalidArgument,
                    "payload size must be " + std::to_string(stream_header_bytes) + ".." +
                        std::to_string(max_udp_payload_bytes) + " bytes (the stream header is " +
                        std::to_string(stream_header_bytes) + "), got " + std::to_string(spec.payload_bytes));
    }
    if (spec.port < 1 || spec.port > 65535) {
        return fail(HostErrc::InvalidArgument, "port must be 1..65535, got " + std::to_string(spec.port));
    }
    if (spec.count < 0 || static_cast<std::uint64_t>(spec.count) > max_packets) {
        return fail(HostErrc::InvalidArgument,
                    "count must be 0 (until stopped) .. 2^32, got " + std::to_string(spec.count));
    }
    if (spec.tick <= std::chrono::nanoseconds::zero()) {
        return fail(HostErrc::InvalidArgument, "tick must be positive");
    }
    return {};
}

HostResult<void> check_socket(int fd) {
    if (fd < 0) {
        return fail(HostErrc::InvalidArgument, "socket fd " + std::to_string(fd) + " is not open");
    }
    int domain = 0;
    int type = 0;
    socklen_t length = sizeof domain;
    if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &length) != 0) {
        return fail(HostErrc::InvalidArgument, "fd " + std::to_string(fd) + " is not a socket: " + errno_text(errno));
    }
    length = sizeof type;
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) != 0) {
        return fail(HostErrc::InvalidArgument, "fd " + std::to_string(fd) + ": SO_TYPE: " + errno_text(errno));
    }
    if (domain != AF_INET || type != SOCK_DGRAM) {
        return fail(HostErrc::InvalidArgument, "fd " + std::to_string(fd) +
                                                   " must be an AF_INET SOCK_DGRAM socket (domain " +
                                                   std::to_string(domain) + ", type " + std::to_string(type) + ")");
    }
    sockaddr_in peer{};
    socklen_t peer_length = sizeof peer;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_length) == 0) {
        return fail(HostErrc::InvalidArgument,
                    "socket fd " + std::to_string(fd) + " is connected; the stream needs an unconnected one");
    }
    return {};
}

std::uint64_t random_stream_id() {
    std::random_device device;
    return (std::uint64_t{device()} << 32) ^ device();
}

}  // namespace

void encode_stream_header(const StreamHeader& header, std::span<std::uint8_t> out) {
    put_big_endian(header.magic, out.data());
    put_big_endian(header.stream_id, out.data() + 4);
    put_big_endian(header.seq, out.data() + 12);
    put_big_endian(static_cast<std::uint64_t>(header.sent_ns), out.data() + 16);
}

std::optional<StreamHeader> decode_stream_header(std::span<const std::uint8_t> datagram) {
    if (datagram.size() < stream_header_bytes) {
        return std::nullopt;
    }
    StreamHeader header;
    header.magic = get_big_endian<std::uint32_t>(datagram.data());
    header.stream_id = get_big_endian<std::uint64_t>(datagram.data() + 4);
    header.seq = get_big_endian<std::uint32_t>(datagram.data() + 12);
    header.sent_ns = static_cast<std::int64_t>(get_big_endian<std::uint64_t>(datagram.data() + 16));
    return header;
}

struct UdpStream::Shared {
    Shared(int socket_fd, int wake_up_fd, const UdpStreamSpec& stream_spec, sockaddr_in to)
        : fd(socket_fd), wake_fd(wake_up_fd), spec(stream_spec), destination(to), stream_id(random_stream_id()) {}
    Shared(const Shared&) = delete;
    Shared& operator=(const Shared&) = delete;
    ~Shared() {
        stop_threads(0);
        ::close(wake_fd);
        ::close(fd);
    }

    void send_loop();
    // Sends seqs [first, first + count) (count <= batch_size).
    void send_batch(std::uint64_t first, std::size_t count, std::vector<std::uint8_t>& buffers);
    void receive_loop();
    // Takes the datagrams recvmmsg left in `messages`; false (the rest of the
    // batch dropped) once spec.max_duplicate_echoes duplicates are kept.
    bool record_echoes(const std::array<mmsghdr, batch_size>& messages, std::size_t count,
                       const std::vector<std::uint8_t>& buffers, std::int64_t arrival_ns);
    void end_receiving(std::optional<HostError> error);
    [[nodiscard]] std::uint64_t received_so_far() const;
    void join_sender();
    // Stops both threads, the receiver after `drain_ns` more; joins them.
    void stop_threads(std::int64_t drain_ns);

    // Constant while the threads run.
    const int fd;
    const int wake_fd;  // eventfd: the receiver looks at receive_until_ns again
    const UdpStreamSpec spec;
    const sockaddr_in destination;
    const std::uint64_t stream_id;

    // Control (start, stop_sending, stop), one caller at a time.
    std::mutex control_mutex;
    bool started = false;
    bool stopped = false;
    std::thread sender;
    std::thread receiver;

    std::atomic<bool> stop_sending{false};
    std::atomic<std::int64_t> receive_until_ns{receive_forever};
    std::atomic<std::uint64_t> issued{0};  // seqs handed out (a seq below it may be echoed)
    std::atomic<std::uint64_t> foreign{0};

    mutable std::mutex sent_mutex;
    mutable std::condition_variable sending_finished;  // every batch issued, and the end of sending
    std::vector<std::int64_t> sent_times;
    std::map<int, std::uint64_t> send_errors;
    bool sending_done = false;

    mutable std::mutex received_mutex;
    mutable std::condition_variable received_changed;
    std::vector<EchoArrival> arrivals;
    std::vector<bool> echoed;  // by seq
    std::uint64_t received = 0;
    std::uint64_t duplicates = 0;  // echoes of a seq already echoed
    bool receiving_done = false;
    std::optional<HostError> receive_error;
};

void UdpStream::Shared::send_loop() {
    std::vector<std::uint8_t> buffers(batch_size * static_cast<std::size_t>(spec.payload_bytes), 0);
    const std::uint64_t limit = spec.count > 0 ? static_cast<std::uint64_t>(spec.count) : max_packets;
    const std::int64_t tick_ns = spec.tick.count();
    const std::int64_t start_ns = monotonic_now_ns();
    std::int64_t next_tick_ns = start_ns;
    std::uint64_t sent = 0;
    while (!stop_sending.load(std::memory_order_acquire)) {
        const std::int64_t now_ns = monotonic_now_ns();
        const double elapsed_s = static_cast<double>(now_ns - start_ns) / 1e9;
        const double due_by_rate = std::floor(spec.rate_pps * elapsed_s) + 1;  // the first at once
        const std::uint64_t due =
            due_by_rate >= static_cast<double>(limit) ? limit : static_cast<std::uint64_t>(due_by_rate);
        while (sent < due && !stop_sending.load(std::memory_order_acquire)) {
            const auto count = static_cast<std::size_t>(std::min<std::uint64_t>(due - sent, batch_size));
            send_batch(sent, count, buffers);
            sent += count;
        }
        if (sent >= limit) {
            break;
        }
        // Behind schedule (a long batch, a stall): the next round comes at
        // once and sends what has fallen due meanwhile.
        next_tick_ns = std::max(next_tick_ns + tick_ns, now_ns);
        sleep_until_ns(next_tick_ns);
    }
    {
        std::lock_guard lock(sent_mutex);
        sending_done = true;
    }
    sending_finished.notify_all();
}

void UdpStream::Shared::send_batch(std::uint64_t first, std::size_t count, std::vector<std::uint8_t>& buffers) {
    const auto payload = static_cast<std::size_t>(spec.payload_bytes);
    std::array<iovec, batch_size> vectors{};
    std::array<mmsghdr, batch_size> messages{};
    {
        std::lock_guard lock(sent_mutex);
        for (std::size_t i = 0; i < count; ++i) {
            const std::int64_t sent_ns = monotonic_now_ns();
            std::uint8_t* data = buffers.data() + i * payload;
            encode_stream_header(StreamHeader{stream_magic, stream_id, static_cast<std::uint32_t>(first + i), sent_ns},
                                 std::span<std::uint8_t>(data, payload));
            sent_times.push_back(sent_ns);
            vectors[i] = iovec{data, payload};
            messages[i].msg_hdr.msg_name = const_cast<sockaddr_in*>(&destination);
            messages[i].msg_hdr.msg_namelen = sizeof destination;
            messages[i].msg_hdr.msg_iov = &vectors[i];
            messages[i].msg_hdr.msg_iovlen = 1;
        }
        // Before the datagrams leave: an echo may come back before sendmmsg returns.
        issued.store(first + count, std::memory_order_release);
    }
    sending_finished.notify_all();  // wait_sent
    std::size_t done = 0;
    while (done < count) {
        const int sent =
            ::sendmmsg(fd, messages.data() + done, static_cast<unsigned>(count - done), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (sent > 0) {
            done += static_cast<std::size_t>(sent);
            continue;
        }
        const int error = sent < 0 ? errno : EIO;
        if (error == EINTR) {
            continue;
        }
        // This datagram is not sent (it will count as lost); go on with the next.
        std::lock_guard lock(sent_mutex);
        ++send_errors[error];
        ++done;
    }
}

void UdpStream::Shared::receive_loop() {
    // Only the header is needed: longer datagrams are truncated.
    std::vector<std::uint8_t> buffers(batch_size * stream_header_bytes, 0);
    std::array<iovec, batch_size> vectors{};
    std::array<mmsghdr, batch_size> messages{};
    for (;;) {
        const std::int64_t until_ns = receive_until_ns.load(std::memory_order_acquire);
        const std::int64_t now_ns = monotonic_now_ns();
        if (now_ns >= until_ns) {
            end_receiving(std::nullopt);
            return;
        }
        const int timeout_ms =
            until_ns == receive_forever
                ? -1
                : static_cast<int>(std::min<std::int64_t>((until_ns - now_ns + 999'999) / 1'000'000, 1'000'000));
        pollfd entries[2] = {{fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
        if (::poll(entries, 2, timeout_ms) < 0) {
            if (errno == EINTR) {
                continue;
            }
            end_receiving(HostError{HostErrc::Io, "receiving the echoes stopped: poll: " + errno_text(errno)});
            return;
        }
        if (entries[1].revents != 0) {
            std::uint64_t wakes = 0;
            (void)!::read(wake_fd, &wakes, sizeof wakes);
        }
        if (entries[0].revents == 0) {
            continue;
        }
        for (std::size_t i = 0; i < batch_size; ++i) {
            vectors[i] = iovec{buffers.data() + i * stream_header_bytes, stream_header_bytes};
            messages[i] = mmsghdr{};
            messages[i].msg_hdr.msg_iov = &vectors[i];
            messages[i].msg_hdr.msg_iovlen = 1;
        }
        const int got = ::recvmmsg(fd, messages.data(), batch_size, MSG_DONTWAIT, nullptr);
        const int error = errno;
        const std::int64_t arrival_ns = monotonic_now_ns();
        if (got > 0) {
            if (!record_echoes(messages, static_cast<std::size_t>(got), buffers, arrival_ns)) {
                end_receiving(HostError{HostErrc::Flooded,
                                        "more than " + std::to_string(spec.max_duplicate_echoes) +
                                            " duplicate echoes (of " + std::to_string(received_so_far()) +
                                            " packets echoed); the receiver stopped, later echoes are not counted"});
                return;
            }
            continue;
        }
        // ECONNREFUSED and friends: an ICMP error for an earlier datagram; the
        // stream goes on (the packet counts as lost).
        if (got == 0 || error == EAGAIN || error == EWOULDBLOCK || error == EINTR || error == ECONNREFUSED ||
            error == EHOSTUNREACH || error == ENETUNREACH) {
            continue;
        }
        end_receiving(HostError{HostErrc::Io, "receiving the echoes stopped: recvmmsg: " + errno_text(error)});
        return;
    }
}

bool UdpStream::Shared::record_echoes(const std::array<mmsghdr, batch_size>& messages, std::size_t count,
                                      const std::vector<std::uint8_t>& buffers, std::int64_t arrival_ns) {
    const std::uint64_t sent_so_far = issued.load(std::memory_order_acquire);
    std::size_t valid = 0;
    bool flooded = false;
    {
        std::lock_guard lock(received_mutex);
        for (std::size_t i = 0; i < count; ++i) {
            const auto header = decode_stream_header(
                std::span<const std::uint8_t>(buffers.data() + i * stream_header_bytes, messages[i].msg_len));
            if (!header || header->magic != stream_magic || header->stream_id != stream_id ||
                header->seq >= sent_so_far) {
                foreign.fetch_add(1, std::memory_order_relaxed);
                continue;
            }
            if (header->seq >= echoed.size()) {
                echoed.resize(std::max<std::size_t>(header->seq + std::size_t{1}, echoed.size() * 2), false);
            }
            if (echoed[header->seq] && duplicates++ >= spec.max_duplicate_echoes) {
                flooded = true;
                break;
            }
            arrivals.push_back(EchoArrival{header->seq, arrival_ns});
            if (!echoed[header->seq]) {
                echoed[header->seq] = true;
                ++received;
            }
            ++valid;
        }
    }
    if (valid > 0) {
        received_changed.notify_all();
    }
    return !flooded;
}

std::uint64_t UdpStream::Shared::received_so_far() const {
    std::lock_guard lock(received_mutex);
    return received;
}

void UdpStream::Shared::end_receiving(std::optional<HostError> error) {
    {
        std::lock_guard lock(received_mutex);
        receiving_done = true;
        receive_error = std::move(error);
    }
    received_changed.notify_all();
}

void UdpStream::Shared::join_sender() {
    stop_sending.store(true, std::memory_order_release);
    if (sender.joinable()) {
        sender.join();
    }
}

void UdpStream::Shared::stop_threads(std::int64_t drain_ns) {
    join_sender();
    if (receiver.joinable()) {
        receive_until_ns.store(monotonic_now_ns() + std::max<std::int64_t>(drain_ns, 0), std::memory_order_release);
        const std::uint64_t one = 1;
        (void)!::write(wake_fd, &one, sizeof one);
        receiver.join();
    }
}

HostResult<UdpStream> UdpStream::create(int socket_fd, const UdpStreamSpec& spec) {
    auto refuse = [socket_fd](HostError error) -> HostResult<UdpStream> {
        if (socket_fd >= 0) {
            ::close(socket_fd);
        }
        return tl::unexpected(std::move(error));
    };
    if (auto valid = check_spec(spec); !valid) {
        return refuse(valid.error());
    }
    sockaddr_in destination{};
    destination.sin_family = AF_INET;
    destination.sin_port = htons(static_cast<std::uint16_t>(spec.port));
    if (::inet_pton(AF_INET, spec.address.c_str(), &destination.sin_addr) != 1) {
        return refuse(HostError{HostErrc::InvalidArgument,
                                "destination '" + spec.address + "' is not an IPv4 address (dotted quad)"});
    }
    if (auto valid = check_socket(socket_fd); !valid) {
        return refuse(valid.error());
    }
    if (::setsockopt(socket_fd, SOL_SOCKET, SO_RCVBUFFORCE, &receive_buffer_bytes, sizeof receive_buffer_bytes) != 0) {
        (void)::setsockopt(socket_fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer_bytes, sizeof receive_buffer_bytes);
    }
    const int wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd < 0) {
        return refuse(HostError{HostErrc::Io, "eventfd: " + errno_text(errno)});
    }
    return UdpStream(std::make_unique<Shared>(socket_fd, wake_fd, spec, destination));
}

UdpStream::UdpStream(std::unique_ptr<Shared> shared) : m_shared(std::move(shared)) {}

UdpStream::UdpStream(UdpStream&& other) noexcept = default;

UdpStream& UdpStream::operator=(UdpStream&& other) noexcept = default;

UdpStream::~UdpStream() = default;  // Shared's destructor stops and joins

HostResult<void> UdpStream::start() {
    Shared& shared = *m_shared;
    std::lock_guard lock(shared.control_mutex);
    if (shared.started || shared.stopped) {
        return fail(HostErrc::InvalidArgument,
                    shared.stopped ? "the stream was stopped; a stream runs once" : "the stream is already running");
    }
    // The threads take no signals: they go to threads that may act on them.
    sigset_t all;
    sigset_t previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    try {
        shared.receiver = std::thread([state = &shared] { state->receive_loop(); });
        shared.sender = std::thread([state = &shared] { state->send_loop(); });
    } catch (const std::system_error& error) {
        pthread_sigmask(SIG_SETMASK, &previous, nullptr);
        shared.stop_threads(0);
        shared.stopped = true;
        return fail(HostErrc::Io, std::string("starting the stream's threads: ") + error.what());
    }
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    shared.started = true;
    return {};
}

void UdpStream::stop_sending() {
    std::lock_guard lock(m_shared->control_mutex);
    m_shared->join_sender();
    if (!m_shared->started) {
        // Never started: wait_sending_done has nothing to wait for.
        std::lock_guard sent_lock(m_shared->sent_mutex);
        m_shared->sending_done = true;
    }
}

HostResult<void> UdpStream::stop(std::chrono::milliseconds drain) {
    if (m_shared == nullptr) {
        return {};
    }
    Shared& shared = *m_shared;
    {
        std::lock_guard lock(shared.control_mutex);
        if (!shared.stopped) {
            shared.stop_threads(std::chrono::duration_cast<std::chrono::nanoseconds>(drain).count());
            shared.stopped = true;
            std::lock_guard sent_lock(shared.sent_mutex);
            shared.sending_done = true;
        }
    }
    shared.sending_finished.notify_all();
    {
        // Never started: nothing will ever arrive either.
        std::lock_guard lock(shared.received_mutex);
        shared.receiving_done = true;
    }
    shared.received_changed.notify_all();
    std::lock_guard lock(shared.received_mutex);
    if (shared.receive_error) {
        return tl::unexpected(*shared.receive_error);
    }
    return {};
}

bool UdpStream::wait_received(std::uint64_t count, Deadline deadline) const {
    Shared& shared = *m_shared;
    std::unique_lock lock(shared.received_mutex);
    shared.received_changed.wait_until(lock, deadline,
                                       [&] { return shared.received >= count || shared.receiving_done; });
    return shared.received >= count;
}

bool UdpStream::wait_sent(std::uint64_t count, Deadline deadline) const {
    Shared& shared = *m_shared;
    std::unique_lock lock(shared.sent_mutex);
    shared.sending_finished.wait_until(lock, deadline, [&] {
        return shared.issued.load(std::memory_order_acquire) >= count || shared.sending_done;
    });
    return shared.issued.load(std::memory_order_acquire) >= count;
}

bool UdpStream::wait_sending_done(Deadline deadline) const {
    Shared& shared = *m_shared;
    std::unique_lock lock(shared.sent_mutex);
    return shared.sending_finished.wait_until(lock, deadline, [&] { return shared.sending_done; });
}

std::uint64_t UdpStream::stream_id() const { return m_shared->stream_id; }

const UdpStreamSpec& UdpStream::spec() const { return m_shared->spec; }

std::uint64_t UdpStream::sent() const { return m_shared->issued.load(std::memory_order_acquire); }

std::uint64_t UdpStream::received() const {
    std::lock_guard lock(m_shared->received_mutex);
    return m_shared->received;
}

std::uint64_t UdpStream::foreign() const { return m_shared->foreign.load(std::memory_order_relaxed); }

std::vector<std::int64_t> UdpStream::sent_times() const {
    std::lock_guard lock(m_shared->sent_mutex);
    return m_shared->sent_times;
}

std::vector<EchoArrival> UdpStream::arrivals() const {
    std::lock_guard lock(m_shared->received_mutex);
    return m_shared->arrivals;
}

std::map<int, std::uint64_t> UdpStream::send_errors() const {
    std::lock_guard lock(m_shared->sent_mutex);
    return m_shared->send_errors;
}

}  // namespace vnetct::host_agent
