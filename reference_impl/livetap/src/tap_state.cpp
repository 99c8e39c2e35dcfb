#include "vnetct/livetap/tap_state.hpp"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/kcmp.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <sstream>
#include <thread>

namespace vnetct::livetap {
namespace {

std::string errno_text(const std::string& what) { return what + ": " + std::strerror(errno); }

// What each queue fd tells about its device.
struct QueueView {
    std::string name;
    std::uint32_t tun_flags = 0;
    std::int32_t vnet_hdr_size = 0;
    bool vnet_le = false;
    std::int32_t sndbuf = 0;
};

LivetapResult<QueueView> read_queue(int fd, std::size_t index) {
    const std::string queue = "queue " + std::to_string(index) + " (fd " + std::to_string(fd) + ")";
    ifreq request{};
    if (ioctl(fd, TUNGETIFF, &request) != 0) {
        // EBADFD: a detached queue or an fd never attached; ENOTTY/EINVAL: not a TAP.
        return fail(LivetapErrc::StateMismatch, errno_text(queue + ": TUNGETIFF"));
    }
    QueueView view;
    view.name = request.ifr_name;
    view.tun_flags = static_cast<std::uint16_t>(request.ifr_flags);
    int value = 0;
    if (ioctl(fd, TUNGETVNETHDRSZ, &value) != 0) {
        return fail(LivetapErrc::Io, errno_text(queue + ": TUNGETVNETHDRSZ"));
    }
    view.vnet_hdr_size = value;
    if (ioctl(fd, TUNGETVNETLE, &value) != 0) {
        return fail(LivetapErrc::Io, errno_text(queue + ": TUNGETVNETLE"));
    }
    view.vnet_le = value != 0;
    if (ioctl(fd, TUNGETSNDBUF, &value) != 0) {
        return fail(LivetapErrc::Io, errno_text(queue + ": TUNGETSNDBUF"));
    }
    view.sndbuf = value;
    return view;
}

struct DeviceIdentity {
    std::int32_t ifindex = 0;
    std::uint64_t netns_inode = 0;  // 0: not readable without CAP_NET_ADMIN
};

LivetapResult<std::int32_t> ifindex_by_socket(int sock, const std::string& name);

LivetapResult<std::int32_t> ifindex_in_current_netns(const std::string& name) {
    UniqueFd sock(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!sock.valid()) {
        return fail(LivetapErrc::Io, errno_text("socket"));
    }
    return ifindex_by_socket(sock.get(), name);
}

// The calling thread's network namespace as it was at the thread's first
// validation (or prepare_validation): an fd to return to and its inode. Kept
// per thread: a thread's first look at /proc/thread-self costs ~50 us.
struct OwnNetns {
    UniqueFd fd;
    ino_t inode = 0;
    // The last identity check's namespace file and socket, closed at the
    // thread's next check or its end: closing them takes ~15 us, which would
    // fall in the blackout (the device's namespace lives on anyway: the queue
    // fds hold it).
    std::vector<UniqueFd> kept;
};
OwnNetns& own_netns() {
    thread_local OwnNetns own = [] {
        OwnNetns found{UniqueFd(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)), 0};
        struct stat info {};
        if (found.fd.valid() && fstat(found.fd.get(), &info) == 0) {
            found.inode = info.st_ino;
        }
        return found;
    }();
    return own;
}

// A socket of the namespace `ns`: this thread enters it for the socket() call
// and returns to its own at once (a socket stays in the namespace it was made
// in). No thread is spawned: a new thread on a busy host may wait milliseconds
// for a CPU, and on a target that wait is in the hand-off's blackout.
LivetapResult<UniqueFd> socket_in_netns(int ns) {
    const int own = own_netns().fd.get();
    if (own < 0) {
        return fail(LivetapErrc::Io, "cannot open the own namespace (/proc/thread-self/ns/net)");
    }
    if (setns(ns, CLONE_NEWNET) != 0) {
        return fail(LivetapErrc::Io, errno_text("setns into the device's namespace"));
    }
    UniqueFd sock(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    const int saved = errno;
    if (setns(own, CLONE_NEWNET) != 0) {
        // Not seen in practice (the thread was there a moment ago); the process
        // must not go on in the device's namespace.
        std::perror("livetap: setns back into the own network namespace");
        std::abort();
    }
    if (!sock.valid()) {
        errno = saved;
        return fail(LivetapErrc::Io, errno_text("socket in the device's namespace"));
    }
    return sock;
}

LivetapResult<std::int32_t> ifindex_by_socket(int sock, const std::string& name) {
    ifreq request{};
    std::strncpy(request.ifr_name, name.c_str(), IFNAMSIZ - 1);
    if (ioctl(sock, SIOCGIFINDEX, &request) != 0) {
        return fail(LivetapErrc::StateMismatch, errno_text("SIOCGIFINDEX " + name));
    }
    return request.ifr_ifindex;
}

// The device's ifindex, looked up in its own namespace (TUNGETDEVNETNS, then
// a socket made there). Without CAP_NET_ADMIN TUNGETDEVNETNS is refused: then
// the device is assumed to be in the caller's namespace and the namespace is
// reported unknown (0).
LivetapResult<DeviceIdentity> read_identity(int fd, const std::string& name) {
    own_netns().kept.clear();
    const int ns = ioctl(fd, TUNGETDEVNETNS);
    if (ns < 0) {
        if (errno != EPERM) {
            return fail(LivetapErrc::Io, errno_text("TUNGETDEVNETNS"));
        }
        auto ifindex = ifindex_in_current_netns(name);
        if (!ifindex) {
            return tl::unexpected(ifindex.error());
        }
        return DeviceIdentity{*ifindex, 0};
    }
    UniqueFd ns_fd(ns);
    struct stat info {};
    if (fstat(ns, &info) != 0) {
        return fail(LivetapErrc::Io, errno_text("fstat netns"));
    }
    if (own_netns().inode == info.st_ino) {
        auto ifindex = ifindex_in_current_netns(name);
        if (!ifindex) {
            return tl::unexpected(ifindex.error());
        }
        return DeviceIdentity{*ifindex, info.st_ino};
    }
    auto sock = socket_in_netns(ns);
    if (!sock) {
        return tl::unexpected(sock.error());
    }
    auto ifindex = ifindex_by_socket(sock->get(), name);
    if (!ifindex) {
        return tl::unexpected(ifindex.error());
    }
    own_netns().kept.push_back(std::move(ns_fd));
    own_netns().kept.push_back(std::move(*sock));
    return DeviceIdentity{*ifindex, info.st_ino};
}

// Whether two fds refer to the same open file (the same queue); none when
// kcmp is not available.
std::optional<bool> same_file(int first, int second) {
    const pid_t self = getpid();
    const long rc = syscall(SYS_kcmp, self, self, KCMP_FILE, first, second);
    if (rc < 0) {
        return std::nullopt;
    }
    return rc == 0;
}

LivetapResult<void> check_distinct(std::span<const int> fds) {
    for (std::size_t i = 0; i < fds.size(); ++i) {
        for (std::size_t j = i + 1; j < fds.size(); ++j) {
            if (same_file(fds[i], fds[j]).value_or(false)) {
                return fail(LivetapErrc::StateMismatch, "queues " + std::to_string(i) + " and " + std::to_string(j) +
                                                            " are the same open queue, not two queues");
            }
        }
    }
    return {};
}

template <typename T>
std::string field_mismatch(const std::string& field, const T& stated, const T& actual, const std::string& where) {
    std::ostringstream text;
    text << field << ": the state says " << stated << ", " << where << " says " << actual;
    return text.str();
}

std::string hex(std::uint32_t value) {
    char text[16];
    std::snprintf(text, sizeof text, "0x%x", value);
    return text;
}

}  // namespace

std::string describe(const TapState& state) {
    std::ostringstream text;
    text << "name=" << state.name << " flags=" << hex(state.tun_flags) << " ifindex=" << state.ifindex
         << " netns=" << state.netns_inode << " vnet_hdr_size=" << state.vnet_hdr_size
         << " vnet_le=" << (state.vnet_le ? 1 : 0) << " sndbuf=" << state.sndbuf << " offloads=" << hex(state.offloads)
         << " queues=" << state.queue_count;
    return text.str();
}

LivetapResult<TapState> capture_tap_state(std::span<const int> queue_fds, std::uint32_t offloads) {
    if (queue_fds.empty() || queue_fds.size() > max_queues) {
        return fail(LivetapErrc::InvalidArgument,
                    std::to_string(queue_fds.size()) + " queue fds, need 1.." + std::to_string(max_queues));
    }
    auto first = read_queue(queue_fds[0], 0);
    if (!first) {
        return tl::unexpected(first.error());
    }
    for (std::size_t index = 1; index < queue_fds.size(); ++index) {
        auto view = read_queue(queue_fds[index], index);
        if (!view) {
            return tl::unexpected(view.error());
        }
        if (view->name != first->name) {
            return fail(LivetapErrc::StateMismatch, "queue " + std::to_string(index) + " belongs to " + view->name +
                                                        ", queue 0 to " + first->name);
        }
    }
    if (auto distinct = check_distinct(queue_fds); !distinct) {
        return tl::unexpected(distinct.error());
    }
    auto identity = read_identity(queue_fds[0], first->name);
    if (!identity) {
        return tl::unexpected(identity.error());
    }
    TapState state;
    state.name = first->name;
    state.tun_flags = first->tun_flags;
    state.ifindex = identity->ifindex;
    state.netns_inode = identity->netns_inode;
    state.vnet_hdr_size = first->vnet_hdr_size;
    state.vnet_le = first->vnet_le;
    state.sndbuf = first->sndbuf;
    state.offloads = offloads;
    state.queue_count = static_cast<std::uint16_t>(queue_fds.size());
    return state;
}

void prepare_validation() { (void)own_netns(); }

LivetapResult<void> validate_tap_state(const TapState& state, std::span<const int> queue_fds,
                                       HandOffStamps* stamps) {
    if (queue_fds.size() != state.queue_count) {
        return fail(LivetapErrc::FdCountMismatch, "the state has " + std::to_string(state.queue_count) +
                                                      " queues, " + std::to_string(queue_fds.size()) +
                                                      " fds arrived");
    }
    if (state.queue_count > 1 && (state.tun_flags & IFF_MULTI_QUEUE) == 0) {
        return fail(LivetapErrc::StateMismatch,
                    std::to_string(state.queue_count) + " queues without IFF_MULTI_QUEUE in the state's flags");
    }
    for (std::size_t index = 0; index < queue_fds.size(); ++index) {
        auto view = read_queue(queue_fds[index], index);
        if (!view) {
            return tl::unexpected(view.error());
        }
        const std::string where = "queue " + std::to_string(index);
        if (view->name != state.name) {
            return fail(LivetapErrc::StateMismatch, field_mismatch("name", state.name, view->name, where));
        }
        if (view->tun_flags != state.tun_flags) {
            return fail(LivetapErrc::StateMismatch,
                        field_mismatch("tun_flags", hex(state.tun_flags), hex(view->tun_flags), where));
        }
        if (view->vnet_hdr_size != state.vnet_hdr_size) {
            return fail(LivetapErrc::StateMismatch,
                        field_mismatch("vnet_hdr_size", state.vnet_hdr_size, view->vnet_hdr_size, where));
        }
        if (view->vnet_le != state.vnet_le) {
            return fail(LivetapErrc::StateMismatch, field_mismatch("vnet_le", state.vnet_le, view->vnet_le, where));
        }
        if (view->sndbuf != state.sndbuf) {
            return fail(LivetapErrc::StateMismatch, field_mismatch("sndbuf", state.sndbuf, view->sndbuf, where));
        }
    }
    mark(stamps, "queues_read");
    if (auto distinct = check_distinct(queue_fds); !distinct) {
        return distinct;
    }
    mark(stamps, "distinct_checked");
    auto identity = read_identity(queue_fds[0], state.name);
    if (!identity) {
        return tl::unexpected(identity.error());
    }
    if (identity->ifindex != state.ifindex) {
        return fail(LivetapErrc::StateMismatch, field_mismatch("ifindex", state.ifindex, identity->ifindex, "the device"));
    }
    if (identity->netns_inode != 0 && state.netns_inode != 0 && identity->netns_inode != state.netns_inode) {
        return fail(LivetapErrc::StateMismatch,
                    field_mismatch("netns", state.netns_inode, identity->netns_inode, "the device"));
    }
    mark(stamps, "identity_checked");
    return {};
}

LivetapResult<OpenedTap> open_tap(const TapSpec& spec) {
    if (spec.name.empty() || spec.name.size() >= IFNAMSIZ) {
        return fail(LivetapErrc::InvalidArgument, "interface name '" + spec.name + "' must be 1..15 bytes");
    }
    if (spec.queues < 1 || spec.queues > static_cast<int>(max_queues)) {
        return fail(LivetapErrc::InvalidArgument, "queues " + std::to_string(spec.queues) + " must be 1.." + std::to_string(max_queues));
    }
    if (spec.vnet_hdr && spec.vnet_hdr_size != 10 && spec.vnet_hdr_size != 12) {
        return fail(LivetapErrc::InvalidArgument,
                    "vnet header size " + std::to_string(spec.vnet_hdr_size) + " must be 10 or 12");
    }
    LivetapResult<std::vector<UniqueFd>> opened = fail(LivetapErrc::Io, "not run");
    // /dev/net/tun binds a queue to the namespace of the thread that opens it.
    std::thread worker([&] {
        if (!spec.netns.empty()) {
            const std::string path = "/run/netns/" + spec.netns;
            UniqueFd ns(open(path.c_str(), O_RDONLY | O_CLOEXEC));
            if (!ns.valid() || setns(ns.get(), CLONE_NEWNET) != 0) {
                opened = fail(LivetapErrc::Io, errno_text("enter " + path));
                return;
            }
        }
        std::vector<UniqueFd> queues;
        for (int index = 0; index < spec.queues; ++index) {
            UniqueFd fd(open("/dev/net/tun", O_RDWR | O_CLOEXEC));
            if (!fd.valid()) {
                opened = fail(LivetapErrc::Io, errno_text("open /dev/net/tun"));
                return;
            }
            ifreq request{};
            std::strncpy(request.ifr_name, spec.name.c_str(), IFNAMSIZ - 1);
            request.ifr_flags = static_cast<short>(IFF_TAP | IFF_NO_PI | (spec.vnet_hdr ? IFF_VNET_HDR : 0) |
                                                   (spec.queues > 1 || spec.multi_queue ? IFF_MULTI_QUEUE : 0));
            if (ioctl(fd.get(), TUNSETIFF, &request) != 0) {
                opened = fail(LivetapErrc::Io, errno_text("TUNSETIFF " + spec.name));
                return;
            }
            queues.push_back(std::move(fd));
        }
        opened = std::move(queues);
    });
    worker.join();
    if (!opened) {
        return tl::unexpected(opened.error());
    }
    const int first = opened->front().get();
    if (spec.vnet_hdr) {
        int size = spec.vnet_hdr_size;
        if (ioctl(first, TUNSETVNETHDRSZ, &size) != 0) {
            return fail(LivetapErrc::Io, errno_text("TUNSETVNETHDRSZ"));
        }
    }
    if (ioctl(first, TUNSETOFFLOAD, static_cast<unsigned long>(spec.offloads)) != 0) {
        return fail(LivetapErrc::Io, errno_text("TUNSETOFFLOAD " + hex(spec.offloads)));
    }
    if (spec.sndbuf != 0) {
        int sndbuf = spec.sndbuf;
        if (ioctl(first, TUNSETSNDBUF, &sndbuf) != 0) {
            return fail(LivetapErrc::Io, errno_text("TUNSETSNDBUF"));
        }
    }
    const auto fds = raw_fds(*opened);
    auto state = capture_tap_state(fds, spec.offloads);
    if (!state) {
        return tl::unexpected(state.error());
    }
    return OpenedTap{std::move(*opened), std::move(*state)};
}

std::vector<int> raw_fds(const std::vector<UniqueFd>& fds) {
    std::vector<int> raw;
    raw.reserve(fds.size());
    for (const auto& fd : fds) {
        raw.push_back(fd.get());
    }
    return raw;
}

}  // namespace vnetct::livetap
