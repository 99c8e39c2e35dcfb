#include "vnetct/guest_agent/kernel.hpp"

#include <fcntl.h>
#include <sys/klog.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

namespace vnetct::guest_agent {
namespace {

constexpr int kSyslogActionReadAll = 3;
constexpr int kSyslogActionSizeBuffer = 10;

bool is_valid_module_name(const std::string& name) {
    return !name.empty() && name.find('/') == std::string::npos && name != "." && name != "..";
}

}  // namespace

std::string kernel_release() {
    utsname names{};
    if (::uname(&names) != 0) {
        return "unknown";
    }
    return names.release;
}

std::vector<std::string> split_lines(std::string_view text) {
    std::vector<std::string> lines;
    while (!text.empty()) {
        const auto newline = text.find('\n');
        lines.emplace_back(text.substr(0, newline));
        if (newline == std::string_view::npos) {
            break;
        }
        text.remove_prefix(newline + 1);
    }
    return lines;
}

GuestResult<std::vector<std::string>> read_kernel_log() {
    const int size = ::klogctl(kSyslogActionSizeBuffer, nullptr, 0);
    if (size < 0) {
        return fail(GuestErrc::KernelLogFailed, describe_errno("SYSLOG_ACTION_SIZE_BUFFER", errno));
    }
    std::string buffer(static_cast<std::size_t>(size), '\0');
    const int length = ::klogctl(kSyslogActionReadAll, buffer.data(), size);
    if (length < 0) {
        return fail(GuestErrc::KernelLogFailed, describe_errno("SYSLOG_ACTION_READ_ALL", errno));
    }
    buffer.resize(static_cast<std::size_t>(length));
    return split_lines(buffer);
}

int finit_module_file(const std::filesystem::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno;
    }
    const long rc = ::syscall(SYS_finit_module, fd, "", 0);
    const int saved_errno = errno;
    ::close(fd);
    return rc == 0 ? 0 : saved_errno;
}

GuestResult<std::vector<ModuleLoadOutcome>> load_modules(const std::filesystem::path& modules_dir,
                                                         const std::vector<std::string>& names,
                                                         const ModuleFileLoader& loader) {
    std::vector<ModuleLoadOutcome> outcomes;
    for (const std::string& name : names) {
        if (!is_valid_module_name(name)) {
            return fail(GuestErrc::BadArgument, "module name \"" + name + "\" is not a plain file name");
        }
        const std::filesystem::path path = modules_dir / (name + ".ko");
        const auto start = std::chrono::steady_clock::now();
        const int error = loader(path);
        const std::chrono::duration<double, std::milli> elapsed = std::chrono::steady_clock::now() - start;
        if (error != 0 && error != EEXIST) {
            return fail(GuestErrc::ModuleLoadFailed,
                        describe_errno("module " + name + " (" + path.string() + ")", error));
        }
        outcomes.push_back(ModuleLoadOutcome{
            name, error == EEXIST ? ModuleStatus::AlreadyLoaded : ModuleStatus::Loaded, elapsed.count()});
    }
    return outcomes;
}

}  // namespace vnetct::guest_agent
