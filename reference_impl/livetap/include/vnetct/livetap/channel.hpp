// The hand-off channel: an AF_UNIX SOCK_SEQPACKET socket (one message per
// frame; a unix socket is what makes the migration local, LT-CFG-04), and the
// hand-off protocol on it:
//
//   source                                   target
//   connect                        ------->  accept
//                                  <-------  Ready (awake, waits for the Offer)
//   stop reading the queues (LT-XFER-02)
//   Offer(state) + every queue fd  ------->  decode, count fds, validate (LT-STATE-02/03, LT-XFER-01)
//                                  <-------  Accept | Reject(code, reason)
//   Commit, close own fds          ------->  start serving the fds
//   (never reads again)
//
// Commit is the point of no return. Before it the source still owns the
// queues: on a Reject, a closed channel (the target died) or a timeout it
// keeps its fds and resumes (LT-XFER-04), and a target that sees no Commit
// drops what it received. The queues keep every frame that arrives meanwhile,
// up to txqueuelen.
//
// The blackout runs from the stop to the target's first read. Ready keeps the
// target's wake-up for the connection out of it, and every wait inside it
// spins (handoff_spin) rather than sleeping: what is left is three messages,
// the validation and no wake-up (stamped step by step: HandOffStamps).
#pragma once

#include <chrono>
#include <span>
#include <string_view>
#include <vector>

#include "vnetct/livetap/codec.hpp"
#include "vnetct/livetap/errors.hpp"
#include "vnetct/livetap/handoff_stamps.hpp"
#include "vnetct/livetap/tap_state.hpp"
#include "vnetct/livetap/unique_fd.hpp"

namespace vnetct::livetap {

using Deadline = std::chrono::steady_clock::time_point;

// Any fd count beyond this (the state's limit) makes a message oversized.
inline constexpr std::size_t max_message_fds = max_queues;

struct Message {
    Frame frame;
    std::vector<UniqueFd> fds;  // what came in SCM_RIGHTS, owned
};

// A connected AF_UNIX SOCK_SEQPACKET pair (CLOEXEC), for tests and for a
// parent handing one end to a child.
[[nodiscard]] LivetapResult<std::pair<UniqueFd, UniqueFd>> channel_pair();

// NotLocal unless `channel` is an AF_UNIX SOCK_SEQPACKET socket.
[[nodiscard]] LivetapResult<void> check_local_channel(int channel);

// One frame and, in the same message, `fds` (none for an empty span).
// PeerClosed when the other end is gone (no SIGPIPE), Timeout when the
// channel stays full until `deadline`.
[[nodiscard]] LivetapResult<void> send_message(int channel, MessageType type, std::span<const std::uint8_t> payload,
                                               std::span<const int> fds, Deadline deadline);
// Sends an already encoded frame as is (tests use it to send damaged ones).
[[nodiscard]] LivetapResult<void> send_raw(int channel, std::span<const std::uint8_t> bytes,
                                           std::span<const int> fds, Deadline deadline);

// The hand-off's own waits (Ready, the Offer, the Accept, the Commit) spin this
// long before they sleep: each is expected within tens of us, and a process
// asleep in poll on a busy host wakes up hundreds of us late, all of it in the
// blackout. A spin yields the CPU between tries (sched_yield): a unix socket
// wakes its reader onto the sender's CPU, so the answer a spin waits for may
// be queued behind it. Measured on the shared 2-core host at 100k pps, median
// blackout per run: sleeping in poll 1040 and 236 us; spinning without
// yielding 4150 and 4670 us (each spin ran out before its peer could run);
// spinning and yielding 149-343 us in 9 of 10 runs (one 1062 us), 196 us the
// median of the ten.
inline constexpr std::chrono::microseconds handoff_spin{2000};

// The next message. Fds that arrive are always owned by the result or closed,
// whatever goes wrong. Timeout, PeerClosed, Oversized (MSG_TRUNC: more than
// max_message_bytes), FdCountMismatch (MSG_CTRUNC: more than max_message_fds
// fds), or the decode_frame errors. For `spin` it tries without sleeping
// (busy), then sleeps in poll until the deadline.
[[nodiscard]] LivetapResult<Message> receive_message(int channel, Deadline deadline,
                                                     std::chrono::microseconds spin = {});

// The source's side, called after it stopped reading the queues. On success
// the hand-off is committed: the fds are the target's and the caller closes
// its own copies without reading again. On any error the caller still owns the
// queues and resumes: Rejected (with the target's code and reason in the
// detail), PeerClosed, Timeout (the channel is shut down so that a late Accept
// cannot be acted on), or a send error.
// `stamps` (if given) gets offer_sent, accept_received, commit_sent.
[[nodiscard]] LivetapResult<void> offer_backend(int channel, const TapState& state, std::span<const int> queue_fds,
                                                Deadline deadline, HandOffStamps* stamps = nullptr);

struct IncomingBackend {
    TapState state;
    std::vector<UniqueFd> queues;
};

// The target's first half: waits for the Offer, decodes it, checks the fd
// count and validates the state against the fds (reads only; it never opens
// /dev/net/tun nor reconfigures, LT-XFER-03). On a failure it sends a Reject
// carrying the code and reason (best effort), closes the fds and returns the
// error. A NoBackend instead of the Offer is NoIncomingFds naming the
// source's reason (LT-CFG-03), and nothing is sent back.
// `stamps` (if given) gets offer_received and validate_tap_state's. `spin`:
// how long it tries before it sleeps (0 for a real-time thread, which must
// not keep the source from its CPU: realtime_window.hpp).
[[nodiscard]] LivetapResult<IncomingBackend> receive_offer(int channel, Deadline deadline,
                                                           HandOffStamps* stamps = nullptr,
                                                           std::chrono::microseconds spin = handoff_spin);

// The target's second half: Accept, then wait for the Commit. Only after it
// returns may the target read the queues. PeerClosed/Timeout: the source did
// not commit, so the target must drop (close) what it received.
// `stamps` (if given) gets accept_sent, commit_received.
[[nodiscard]] LivetapResult<void> accept_offer(int channel, Deadline deadline, HandOffStamps* stamps = nullptr);

// The target's first message on a connection, sent before it waits for the
// Offer: it is awake. Best effort: a source that announced NoBackend and left
// is not an error here (receive_offer reports what it sent).
void announce_ready(int channel, Deadline deadline);

// The source's wait for Ready on a new connection, before it stops reading:
// then the target's wake-up for the connection is behind them, not in the
// blackout. PeerClosed, Timeout, or UnexpectedMessage.
[[nodiscard]] LivetapResult<void> await_ready(int channel, Deadline deadline);

// The source's side of a migration that does not transfer the backend
// (LT-CFG-01/04): NoBackend with `why`, no fd, and nothing is awaited back.
[[nodiscard]] LivetapResult<void> announce_no_backend(int channel, std::string_view why, Deadline deadline);

// The target refuses an offer it received (for reasons of its own).
[[nodiscard]] LivetapResult<void> reject_offer(int channel, const Rejection& rejection, Deadline deadline);

// receive_offer + accept_offer.
[[nodiscard]] LivetapResult<IncomingBackend> receive_backend(int channel, Deadline deadline);

}  // namespace vnetct::livetap
