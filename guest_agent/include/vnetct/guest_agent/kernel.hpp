// Thin wrappers over the kernel facilities the commands use: uname, the
// kernel ring buffer (klogctl) and module loading (finit_module).
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "vnetct/guest_agent/errors.hpp"

namespace vnetct::guest_agent {

// uname -r
[[nodiscard]] std::string kernel_release();

// SYSLOG_ACTION_READ_ALL, split into lines (without the trailing empty one).
[[nodiscard]] GuestResult<std::vector<std::string>> read_kernel_log();
[[nodiscard]] std::vector<std::string> split_lines(std::string_view text);

// X(Name, "spelling in the load-modules reply")
#define VNETCT_MODULE_STATUSES(X) \
    X(Loaded, "loaded")           \
    X(AlreadyLoaded, "already-loaded")
VNETCT_DEFINE_ENUM(ModuleStatus, VNETCT_MODULE_STATUSES)

struct ModuleLoadOutcome {
    std::string name;
    ModuleStatus status = ModuleStatus::Loaded;
    double milliseconds = 0.0;
};

// Loads one module file; returns 0 or the errno value. The real one opens the
// file and calls finit_module.
using ModuleFileLoader = std::function<int(const std::filesystem::path& path)>;
[[nodiscard]] int finit_module_file(const std::filesystem::path& path);

// Loads <modules_dir>/<name>.ko in order; EEXIST counts as already loaded, any
// other failure stops and names the module, its path and the errno string.
[[nodiscard]] GuestResult<std::vector<ModuleLoadOutcome>> load_modules(
    const std::filesystem::path& modules_dir, const std::vector<std::string>& names,
    const ModuleFileLoader& loader = finit_module_file);

}  // namespace vnetct::guest_agent
