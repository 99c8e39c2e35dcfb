// vnetct-host-agent: the host side of vnetct where the host is remote (inside
// an L1 guest). A thin shell over the library: options, the stream, signals.
//   vnetct-host-agent [--port NAME | --device PATH | --stdio] [--sysfs-root DIR]
#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <ctime>
#include <iomanip>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "vnetct/guest_agent/agent.hpp"
#include "vnetct/remote/agent.hpp"
#include "vnetct/stop_signals.hpp"

namespace {

constexpr const char* kUsage =
    "usage: vnetct-host-agent [--port NAME | --device PATH | --stdio] [--sysfs-root DIR]\n"
    "  --port NAME     the virtio-serial port of that name (default org.vnetct.host-agent), found under\n"
    "                  SYSFS/class/virtio-ports; the harness may connect and go away and come back\n"
    "  --device PATH   that character device, the same way\n"
    "  --stdio         stdin and stdout (a pipe or a socket): the end of input ends the agent\n";

}  // namespace

int main(int argc, char** argv) {
    using namespace vnetct;
    remote::RemoteOptions options;
    std::string port(remote::kPortName);
    std::string device;
    bool stdio = false;
    const std::vector<std::string> arguments(argv + 1, argv + argc);
    for (std::size_t i = 0; i < arguments.size(); ++i) {
        const std::string& argument = arguments[i];
        const bool has_value = i + 1 < arguments.size();
        if (argument == "--stdio") {
            stdio = true;
        } else if (argument == "--port" && has_value) {
            port = arguments[++i];
        } else if (argument == "--device" && has_value) {
            device = arguments[++i];
        } else if (argument == "--sysfs-root" && has_value) {
            options.sysfs_root = arguments[++i];
        } else if (argument == "--help" || argument == "-h") {
            std::cout << kUsage;
            return 0;
        } else {
            std::cerr << "vnetct-host-agent: unknown or incomplete option '" << argument << "'\n" << kUsage;
            return 2;
        }
    }
    const int stop_fd = vnetct::stop_signal_fd();
    if (stop_fd < 0) {
        std::cerr << "vnetct-host-agent: signalfd: " << std::strerror(errno) << "\n";
        return 1;
    }
    if (stdio) {
        return remote::serve(options, STDIN_FILENO, STDOUT_FILENO, stop_fd);
    }
    if (device.empty()) {
        // The port is probed by a built-in driver during boot: give it a few seconds.
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        for (;;) {
            auto found = guest_agent::find_port(options.sysfs_root, port);
            if (found) {
                auto path = guest_agent::ensure_port_device(options.sysfs_root, *found);
                if (!path) {
                    std::cerr << "vnetct-host-agent: " << path.error().message() << "\n";
                    return 1;
                }
                device = path->string();
                break;
            }
            if (std::chrono::steady_clock::now() >= deadline) {
                std::cerr << "vnetct-host-agent: port " << port << ": " << found.error().message() << " (waited 5 s)\n";
                return 1;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the kernel gives no event for it
        }
    }
    const int fd = ::open(device.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        std::cerr << "vnetct-host-agent: open " << device << ": " << std::strerror(errno) << "\n";
        return 1;
    }
    timespec boot{};
    ::clock_gettime(CLOCK_BOOTTIME, &boot);
    std::cerr << "vnetct-host-agent: talking over " << device << " (up " << boot.tv_sec << "."
              << std::setfill('0') << std::setw(2) << boot.tv_nsec / 10'000'000 << " s)\n";
    options.reconnecting = true;
    const int code = remote::serve(options, fd, fd, stop_fd);
    ::close(fd);
    return code;
}
