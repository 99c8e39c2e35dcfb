#include "vnetct/guest_agent/ethtool.hpp"

#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace vnetct::guest_agent {
namespace {

constexpr std::size_t kMaxHardwareAddress = 32;  // MAX_ADDR_LEN

// One SIOCETHTOOL ioctl on a throwaway datagram socket; returns 0 or errno.
int ethtool_ioctl(const std::string& ifname, void* command) {
    if (ifname.size() >= IFNAMSIZ) {
        return ENODEV;
    }
    const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return errno;
    }
    ifreq request{};
    std::memcpy(request.ifr_name, ifname.c_str(), ifname.size() + 1);
    request.ifr_data = static_cast<char*>(command);
    const int rc = ::ioctl(fd, SIOCETHTOOL, &request);
    const int saved_errno = errno;
    ::close(fd);
    return rc < 0 ? saved_errno : 0;
}

std::string fixed_string(const char* text, std::size_t capacity) {
    return std::string(text, strnlen(text, capacity));
}

}  // namespace

GuestResult<DriverInfo> SocketEthtool::driver_info(const std::string& ifname) {
    ethtool_drvinfo info{};
    info.cmd = ETHTOOL_GDRVINFO;
    if (const int error = ethtool_ioctl(ifname, &info); error != 0) {
        return fail(GuestErrc::EthtoolFailed, describe_errno("ETHTOOL_GDRVINFO on " + ifname, error));
    }
    return DriverInfo{fixed_string(info.driver, sizeof info.driver),
                      fixed_string(info.bus_info, sizeof info.bus_info)};
}

GuestResult<MacAddress> SocketEthtool::permanent_address(const std::string& ifname) {
    std::vector<std::uint8_t> buffer(sizeof(ethtool_perm_addr) + kMaxHardwareAddress);
    auto* request = reinterpret_cast<ethtool_perm_addr*>(buffer.data());
    request->cmd = ETHTOOL_GPERMADDR;
    request->size = kMaxHardwareAddress;
    if (const int error = ethtool_ioctl(ifname, request); error != 0) {
        return fail(GuestErrc::EthtoolFailed, describe_errno("ETHTOOL_GPERMADDR on " + ifname, error));
    }
    if (request->size != 6) {
        return fail(GuestErrc::EthtoolFailed,
                    "ETHTOOL_GPERMADDR on " + ifname + ": address length " + std::to_string(request->size));
    }
    MacAddress address{};
    std::memcpy(address.data(), buffer.data() + sizeof(ethtool_perm_addr), address.size());
    return address;
}

std::string format_mac(const std::uint8_t* bytes, std::size_t length) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string text;
    for (std::size_t i = 0; i < length; ++i) {
        if (i != 0) {
            text += ':';
        }
        text += kHex[bytes[i] >> 4];
        text += kHex[bytes[i] & 0xf];
    }
    return text;
}

}  // namespace vnetct::guest_agent
