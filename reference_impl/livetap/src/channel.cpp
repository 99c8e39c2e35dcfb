#include "vnetct/livetap/channel.hpp"

#include <poll.h>
#include <sched.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace vnetct::livetap {
namespace {

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

int remaining_ms(Deadline deadline) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    return static_cast<int>(std::clamp<std::int64_t>(left.count(), 0, 1 << 30));
}

// Waits for `events` on `fd` until the deadline. Timeout names `what`.
LivetapResult<void> wait_for(int fd, short events, Deadline deadline, const char* what) {
    for (;;) {
        pollfd entry{fd, events, 0};
        const int ready = poll(&entry, 1, remaining_ms(deadline));
        if (ready > 0) {
            return {};
        }
        if (ready == 0) {
            return fail(LivetapErrc::Timeout, std::string("waiting for ") + what);
        }
        if (errno != EINTR) {
            return fail(LivetapErrc::Io, errno_text("poll"));
        }
    }
}

LivetapError unexpected_message(const Frame& frame, const char* expected) {
    return LivetapError{LivetapErrc::UnexpectedMessage,
                        std::string(to_string(frame.type)) + " while waiting for " + expected};
}

}  // namespace

LivetapResult<std::pair<UniqueFd, UniqueFd>> channel_pair() {
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) {
        return fail(LivetapErrc::Io, errno_text("socketpair"));
    }
    return std::pair{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

LivetapResult<void> check_local_channel(int channel) {
    int domain = 0;
    int type = 0;
    socklen_t size = sizeof domain;
    if (getsockopt(channel, SOL_SOCKET, SO_DOMAIN, &domain, &size) != 0) {
        return fail(LivetapErrc::NotLocal, errno_text("fd " + std::to_string(channel) + " is not a socket"));
    }
    size = sizeof type;
    if (getsockopt(channel, SOL_SOCKET, SO_TYPE, &type, &size) != 0) {
        return fail(LivetapErrc::Io, errno_text("SO_TYPE"));
    }
    if (domain != AF_UNIX || type != SOCK_SEQPACKET) {
        return fail(LivetapErrc::NotLocal, "socket domain " + std::to_string(domain) + " type " +
                                               std::to_string(type) + ", fds travel only over AF_UNIX SOCK_SEQPACKET");
    }
    return {};
}

LivetapResult<void> send_raw(int channel, std::span<const std::uint8_t> bytes, std::span<const int> fds,
                             Deadline deadline) {
    if (fds.size() > max_message_fds) {
        return fail(LivetapErrc::Oversized,
                    std::to_string(fds.size()) + " fds, at most " + std::to_string(max_message_fds));
    }
    iovec data{const_cast<std::uint8_t*>(bytes.data()), bytes.size()};
    msghdr message{};
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    std::vector<std::uint8_t> control;
    if (!fds.empty()) {
        control.assign(CMSG_SPACE(sizeof(int) * fds.size()), 0);
        message.msg_control = control.data();
        message.msg_controllen = control.size();
        cmsghdr* header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(header), fds.data(), sizeof(int) * fds.size());
    }
    for (;;) {
        if (sendmsg(channel, &message, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0) {
            return {};
        }
        if (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN) {
            return fail(LivetapErrc::PeerClosed, errno_text("sendmsg"));
        }
        if (errno == EMSGSIZE) {
            return fail(LivetapErrc::Oversized, errno_text("sendmsg of " + std::to_string(bytes.size()) + " bytes"));
        }
        if (errno != EAGAIN && errno != EINTR) {
            return fail(LivetapErrc::Io, errno_text("sendmsg"));
        }
        if (auto ready = wait_for(channel, POLLOUT, deadline, "room on the hand-off channel"); !ready) {
            return ready;
        }
    }
}

LivetapResult<void> send_message(int channel, MessageType type, std::span<const std::uint8_t> payload,
                                 std::span<const int> fds, Deadline deadline) {
    auto bytes = encode_frame(type, payload);
    if (!bytes) {
        return tl::unexpected(bytes.error());
    }
    return send_raw(channel, *bytes, fds, deadline);
}

LivetapResult<Message> receive_message(int channel, Deadline deadline, std::chrono::microseconds spin) {
    std::vector<std::uint8_t> buffer(max_message_bytes + 1);
    std::vector<std::uint8_t> control(CMSG_SPACE(sizeof(int) * max_message_fds));
    const auto spin_until = std::min(deadline, std::chrono::steady_clock::now() + spin);
    bool reset_seen = false;
    for (;;) {
        // Spinning: try again at once (no sleep, no wake-up to wait for);
        // past the spin, sleep in poll until the deadline.
        const bool spinning = std::chrono::steady_clock::now() < spin_until;
        if (!spinning) {
            if (auto ready = wait_for(channel, POLLIN, deadline, "a hand-off message"); !ready) {
                return tl::unexpected(ready.error());
            }
        }
        iovec data{buffer.data(), buffer.size()};
        msghdr message{};
        message.msg_iov = &data;
        message.msg_iovlen = 1;
        message.msg_control = control.data();
        message.msg_controllen = control.size();
        const ssize_t size = recvmsg(channel, &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (size < 0) {
            if (errno == EAGAIN && spinning) {
                // The peer is woken onto the waker's CPU (a unix socket's
                // wake-up is synchronous): a spin that held the CPU would keep
                // the very answer it waits for from running.
                sched_yield();
                continue;
            }
            if (errno == EAGAIN || errno == EINTR) {
                continue;
            }
            if (errno == ECONNRESET && !reset_seen) {
                // The peer closed with a message of ours unread (a Ready the
                // source of a NoBackend never reads); what it sent before is
                // still queued here: read on, the end of it says PeerClosed.
                reset_seen = true;
                continue;
            }
            if (errno == ECONNRESET) {
                return fail(LivetapErrc::PeerClosed, errno_text("recvmsg"));
            }
            return fail(LivetapErrc::Io, errno_text("recvmsg"));
        }
        // Own every fd that arrived before looking at anything else.
        Message received;
        for (cmsghdr* header = CMSG_FIRSTHDR(&message); header != nullptr; header = CMSG_NXTHDR(&message, header)) {
            if (header->cmsg_level == SOL_SOCKET && header->cmsg_type == SCM_RIGHTS) {
                const std::size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (std::size_t index = 0; index < count; ++index) {
                    int fd = -1;
                    std::memcpy(&fd, CMSG_DATA(header) + index * sizeof(int), sizeof fd);
                    received.fds.emplace_back(fd);
                }
            }
        }
        if (size == 0) {
            return fail(LivetapErrc::PeerClosed, "end of the hand-off channel");
        }
        if ((message.msg_flags & MSG_TRUNC) != 0 || static_cast<std::size_t>(size) > max_message_bytes) {
            return fail(LivetapErrc::Oversized, "a message over " + std::to_string(max_message_bytes) + " bytes");
        }
        if ((message.msg_flags & MSG_CTRUNC) != 0) {
            return fail(LivetapErrc::FdCountMismatch,
                        "more than " + std::to_string(max_message_fds) + " fds in one message (control truncated)");
        }
        auto frame = decode_frame(std::span(buffer).first(static_cast<std::size_t>(size)));
        if (!frame) {
            return tl::unexpected(frame.error());
        }
        received.frame = std::move(*frame);
        return received;
    }
}

LivetapResult<void> offer_backend(int channel, const TapState& state, std::span<const int> queue_fds,
                                  Deadline deadline, HandOffStamps* stamps) {
    if (auto local = check_local_channel(channel); !local) {
        return local;
    }
    if (queue_fds.size() != state.queue_count) {
        return fail(LivetapErrc::FdCountMismatch, "offering " + std::to_string(queue_fds.size()) +
                                                      " fds with a state of " + std::to_string(state.queue_count) +
                                                      " queues");
    }
    auto payload = encode_state(state);
    if (!payload) {
        return tl::unexpected(payload.error());
    }
    auto give_up = [&](LivetapError error) -> LivetapResult<void> {
        // No Commit will follow: make sure a late Accept cannot be acted on.
        shutdown(channel, SHUT_RDWR);
        return tl::unexpected(std::move(error));
    };
    if (auto sent = send_message(channel, MessageType::Offer, *payload, queue_fds, deadline); !sent) {
        return give_up(sent.error());
    }
    mark(stamps, "offer_sent");
    auto reply = receive_message(channel, deadline, handoff_spin);
    if (!reply) {
        return give_up(reply.error());
    }
    mark(stamps, "accept_received");
    if (reply->frame.type == MessageType::Reject) {
        auto rejection = decode_rejection(reply->frame.payload);
        if (!rejection) {
            return give_up(rejection.error());
        }
        return give_up(LivetapError{LivetapErrc::Rejected,
                                    std::string(to_string(rejection->code)) + ": " + rejection->reason});
    }
    if (reply->frame.type != MessageType::Accept || !reply->frame.payload.empty() || !reply->fds.empty()) {
        return give_up(unexpected_message(reply->frame, "Accept or Reject"));
    }
    if (auto committed = send_message(channel, MessageType::Commit, {}, {}, deadline); !committed) {
        return give_up(committed.error());
    }
    mark(stamps, "commit_sent");
    // The target was woken onto this CPU (a synchronous wake-up, which
    // assumes the waker sleeps next); the source does not, so it steps aside
    // once: the target's first read is the end of the blackout.
    sched_yield();
    return {};
}

void announce_ready(int channel, Deadline deadline) {
    (void)send_message(channel, MessageType::Ready, {}, {}, deadline);
}

LivetapResult<void> await_ready(int channel, Deadline deadline) {
    auto ready = receive_message(channel, deadline, handoff_spin);
    if (!ready) {
        return tl::unexpected(ready.error());
    }
    if (ready->frame.type != MessageType::Ready || !ready->frame.payload.empty() || !ready->fds.empty()) {
        return tl::unexpected(unexpected_message(ready->frame, "Ready"));
    }
    return {};
}

LivetapResult<void> announce_no_backend(int channel, std::string_view why, Deadline deadline) {
    const std::span<const std::uint8_t> payload(reinterpret_cast<const std::uint8_t*>(why.data()), why.size());
    return send_message(channel, MessageType::NoBackend, payload, {}, deadline);
}

LivetapResult<void> reject_offer(int channel, const Rejection& rejection, Deadline deadline) {
    return send_message(channel, MessageType::Reject, encode_rejection(rejection), {}, deadline);
}

LivetapResult<IncomingBackend> receive_offer(int channel, Deadline deadline, HandOffStamps* stamps,
                                             std::chrono::microseconds spin) {
    auto refuse = [&](LivetapError error) -> LivetapResult<IncomingBackend> {
        if (error.code != LivetapErrc::PeerClosed && error.code != LivetapErrc::Timeout) {
            (void)reject_offer(channel, Rejection{error.code, error.detail}, deadline);
        }
        return tl::unexpected(std::move(error));
    };
    if (auto local = check_local_channel(channel); !local) {
        return tl::unexpected(local.error());
    }
    auto message = receive_message(channel, deadline, spin);
    if (!message) {
        return refuse(message.error());
    }
    mark(stamps, "offer_received");
    if (message->frame.type == MessageType::NoBackend && message->fds.empty()) {
        // LT-CFG-03: the migration goes on without fds; the source awaits no reply.
        const auto& why = message->frame.payload;
        return fail(LivetapErrc::NoIncomingFds,
                    "the source migrates without its backend: " + std::string(why.begin(), why.end()));
    }
    if (message->frame.type != MessageType::Offer) {
        return refuse(unexpected_message(message->frame, "Offer"));
    }
    auto state = decode_state(message->frame.payload);
    if (!state) {
        return refuse(state.error());
    }
    if (message->fds.size() != state->queue_count) {
        return refuse(LivetapError{LivetapErrc::FdCountMismatch,
                                   "the state has " + std::to_string(state->queue_count) + " queues, " +
                                       std::to_string(message->fds.size()) + " fds arrived"});
    }
    if (auto valid = validate_tap_state(*state, raw_fds(message->fds), stamps); !valid) {
        return refuse(valid.error());
    }
    return IncomingBackend{std::move(*state), std::move(message->fds)};
}

LivetapResult<void> accept_offer(int channel, Deadline deadline, HandOffStamps* stamps) {
    if (auto sent = send_message(channel, MessageType::Accept, {}, {}, deadline); !sent) {
        return sent;
    }
    mark(stamps, "accept_sent");
    auto commit = receive_message(channel, deadline, handoff_spin);
    if (!commit) {
        return tl::unexpected(commit.error());
    }
    mark(stamps, "commit_received");
    if (commit->frame.type != MessageType::Commit || !commit->frame.payload.empty() || !commit->fds.empty()) {
        return tl::unexpected(unexpected_message(commit->frame, "Commit"));
    }
    return {};
}

LivetapResult<IncomingBackend> receive_backend(int channel, Deadline deadline) {
    auto incoming = receive_offer(channel, deadline);
    if (!incoming) {
        return incoming;
    }
    if (auto accepted = accept_offer(channel, deadline); !accepted) {
        return tl::unexpected(accepted.error());
    }
    return incoming;
}

}  // namespace vnetct::livetap
