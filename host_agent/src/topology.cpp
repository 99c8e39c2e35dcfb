#include "vnetct/host_agent/topology.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <utility>

namespace vnetct::host_agent {
namespace {

constexpr auto kIpTimeout = std::chrono::seconds(20);

HostResult<std::string> ip(const std::vector<std::string>& arguments) {
    std::vector<std::string> argv{"ip"};
    argv.insert(argv.end(), arguments.begin(), arguments.end());
    auto output = run_checked(argv, std::chrono::steady_clock::now() + kIpTimeout);
    if (!output) {
        return fail(HostErrc::TopologyFailed, output.error().message());
    }
    return output;
}

bool valid_name(const std::string& name, std::size_t max_length) {
    if (name.empty() || name.size() > max_length) {
        return false;
    }
    for (char c : name) {
        if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) {
            return false;
        }
    }
    return true;
}

}  // namespace

HostResult<Topology> Topology::create(const TopologySpec& spec) {
    if (!valid_name(spec.netns, 64)) {
        return fail(HostErrc::InvalidArgument, "netns name '" + spec.netns + "' must be 1-64 of [A-Za-z0-9_-]");
    }
    if (!valid_name(spec.device_prefix, 9)) {
        return fail(HostErrc::InvalidArgument,
                    "device prefix '" + spec.device_prefix + "' must be 1-9 of [A-Za-z0-9_-] (IFNAMSIZ)");
    }
    if (spec.taps < 1 || spec.taps > 16) {
        return fail(HostErrc::InvalidArgument, "taps must be 1..16, got " + std::to_string(spec.taps));
    }
    Topology topology(spec);
    if (auto built = topology.build(); !built) {
        topology.destroy();
        return tl::unexpected(built.error());
    }
    return topology;
}

HostResult<void> Topology::build() {
    const std::string& ns = m_spec.netns;
    if (auto added = ip({"netns", "add", ns}); !added) {
        return tl::unexpected(added.error());
    }
    m_exists = true;
    const std::vector<std::vector<std::string>> steps = {
        {"-n", ns, "link", "set", "lo", "up"},
        {"-n", ns, "link", "add", bridge(), "type", "bridge", "stp_state", "0", "forward_delay", "0"},
        {"-n", ns, "link", "set", bridge(), "up"},
        {"-n", ns, "link", "add", peer_interface(), "type", "veth", "peer", "name", m_spec.device_prefix + "pbr"},
        {"-n", ns, "link", "set", m_spec.device_prefix + "pbr", "master", bridge(), "up"},
        {"-n", ns, "addr", "add", m_spec.peer_address, "dev", peer_interface()},
        {"-n", ns, "link", "set", peer_interface(), "up"},
    };
    for (const auto& step : steps) {
        if (auto done = ip(step); !done) {
            return tl::unexpected(done.error());
        }
    }
    for (const auto& name : taps()) {
        const std::vector<std::vector<std::string>> tap_steps = {
            {"-n", ns, "tuntap", "add", "dev", name, "mode", "tap", "vnet_hdr"},
            {"-n", ns, "link", "set", name, "master", bridge()},
            // The eswitch rule: never learn the guest's MAC on one TAP, so
            // frames for it reach the standby and the primary alike.
            {"-n", ns, "link", "set", "dev", name, "type", "bridge_slave", "learning", "off", "flood", "on"},
            {"-n", ns, "link", "set", name, "up"},
        };
        for (const auto& step : tap_steps) {
            if (auto done = ip(step); !done) {
                return tl::unexpected(done.error());
            }
        }
    }
    return {};
}

Topology::Topology(Topology&& other) noexcept
    : m_spec(std::move(other.m_spec)), m_exists(std::exchange(other.m_exists, false)) {}

Topology& Topology::operator=(Topology&& other) noexcept {
    if (this != &other) {
        destroy();
        m_spec = std::move(other.m_spec);
        m_exists = std::exchange(other.m_exists, false);
    }
    return *this;
}

Topology::~Topology() { destroy(); }

std::vector<std::string> Topology::taps() const {
    std::vector<std::string> names;
    for (int index = 0; index < m_spec.taps; ++index) {
        names.push_back(tap(index));
    }
    return names;
}

HostResult<std::string> Topology::describe() const {
    auto links = ip({"-n", m_spec.netns, "-s", "-d", "link", "show"});
    if (!links) {
        return links;
    }
    auto fdb = run_checked({"bridge", "-n", m_spec.netns, "fdb", "show", "br", bridge()},
                           std::chrono::steady_clock::now() + kIpTimeout);
    return *links + "\n# bridge fdb show br " + bridge() + "\n" + (fdb ? *fdb : fdb.error().message());
}

HostResult<void> Topology::destroy() {
    if (!m_exists) {
        return {};
    }
    m_exists = false;
    struct stat info {};
    if (stat(("/run/netns/" + m_spec.netns).c_str(), &info) != 0 && errno == ENOENT) {
        return {};  // already gone (e.g. removed by an end-of-run sweep)
    }
    auto deleted = ip({"netns", "delete", m_spec.netns});
    if (!deleted) {
        return tl::unexpected(deleted.error());
    }
    return {};
}

std::vector<std::string> list_netns(const std::string& prefix) {
    std::vector<std::string> names;
    DIR* dir = opendir("/run/netns");
    if (dir == nullptr) {
        return names;
    }
    while (const dirent* entry = readdir(dir)) {
        const std::string name = entry->d_name;
        if (name != "." && name != ".." && name.rfind(prefix, 0) == 0) {
            names.push_back(name);
        }
    }
    closedir(dir);
    return names;
}

HostResult<std::vector<std::string>> sweep_netns(const std::string& prefix) {
    if (prefix.size() < 4) {
        return fail(HostErrc::InvalidArgument, "refusing to sweep namespaces with the short prefix '" + prefix + "'");
    }
    std::vector<std::string> deleted;
    for (const auto& name : list_netns(prefix)) {
        if (auto done = ip({"netns", "delete", name}); !done) {
            return tl::unexpected(done.error());
        }
        deleted.push_back(name);
    }
    return deleted;
}

namespace {

// Runs `make_fd` on a throwaway thread moved into the namespace (setns()
// moves only the calling thread), returning its fd.
template <typename MakeFd>
HostResult<int> fd_in_netns(const std::string& netns, MakeFd&& make_fd) {
    HostResult<int> result = fail(HostErrc::TopologyFailed, "not run");
    std::thread worker([&] {
        const std::string path = "/run/netns/" + netns;
        const int ns = open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (ns < 0) {
            result = fail(HostErrc::TopologyFailed, "open " + path + ": " + strerror(errno));
            return;
        }
        if (setns(ns, CLONE_NEWNET) != 0) {
            result = fail(HostErrc::TopologyFailed, "setns " + path + ": " + strerror(errno));
            close(ns);
            return;
        }
        close(ns);
        result = make_fd();
    });
    worker.join();
    return result;
}

}  // namespace

HostResult<int> open_socket_in_netns(const std::string& netns, int domain, int type, int protocol) {
    return fd_in_netns(netns, [&]() -> HostResult<int> {
        const int fd = socket(domain, type | SOCK_CLOEXEC, protocol);
        if (fd < 0) {
            return fail(HostErrc::TopologyFailed, std::string("socket: ") + strerror(errno));
        }
        return fd;
    });
}

HostResult<int> open_tap_in_netns(const std::string& netns, const std::string& name) {
    if (name.empty() || name.size() >= IFNAMSIZ) {
        return fail(HostErrc::InvalidArgument, "TAP name '" + name + "': 1 to 15 characters expected");
    }
    return fd_in_netns(netns, [&]() -> HostResult<int> {
        // TUNSETIFF would create a missing TAP: attach only to one that exists.
        if (if_nametoindex(name.c_str()) == 0) {
            return fail(HostErrc::TopologyFailed, "no TAP named " + name + " in " + netns);
        }
        const int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            return fail(HostErrc::TopologyFailed, std::string("open /dev/net/tun: ") + strerror(errno));
        }
        ifreq request{};
        std::memcpy(request.ifr_name, name.c_str(), name.size());
        request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        if (ioctl(fd, TUNSETIFF, &request) != 0) {
            const int error = errno;
            close(fd);
            return fail(HostErrc::TopologyFailed, "TUNSETIFF " + name + " in " + netns + ": " + strerror(error));
        }
        return fd;
    });
}

}  // namespace vnetct::host_agent
