// Files a reader must never see half-written, even after a crash or a power
// cut (the SR-IOV undo journal): written to a temporary file beside the target
// (mkstemp, unique per writer), fsync'd, renamed over the target, and the
// directory fsync'd, so the name always points at a whole file, the old one
// or the new one. The Python twin is vnetct.core.atomic_file.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>

#include <tl/expected.hpp>

namespace vnetct {

// Replaces `path` by `content`. On failure the error names the step and the
// file; the target is unchanged and no temporary file is left.
[[nodiscard]] inline tl::expected<void, std::string> write_file_atomically(const std::filesystem::path& path,
                                                                          std::string_view content,
                                                                          mode_t mode = 0644) {
    const std::filesystem::path directory = path.has_parent_path() ? path.parent_path() : ".";
    std::string temporary = (directory / ("." + path.filename().string() + ".XXXXXX")).string();
    const int fd = mkostemp(temporary.data(), O_CLOEXEC);
    if (fd < 0) {
        return tl::unexpected("creating a temporary file beside " + path.string() + ": " + std::strerror(errno));
    }
    const auto give_up = [&](const std::string& step) {
        const std::string text = step + " " + temporary + ": " + std::strerror(errno);
        close(fd);
        unlink(temporary.c_str());
        return tl::unexpected(text);
    };
    for (std::size_t written = 0; written < content.size();) {
        const ssize_t length = write(fd, content.data() + written, content.size() - written);
        if (length < 0 && errno == EINTR) {
            continue;
        }
        if (length <= 0) {
            return give_up("writing");
        }
        written += static_cast<std::size_t>(length);
    }
    if (fchmod(fd, mode) != 0) {
        return give_up("setting the mode of");
    }
    if (fsync(fd) != 0) {
        return give_up("syncing");
    }
    if (close(fd) != 0) {
        const std::string text = "closing " + temporary + ": " + std::strerror(errno);
        unlink(temporary.c_str());
        return tl::unexpected(text);
    }
    if (rename(temporary.c_str(), path.c_str()) != 0) {
        const std::string text = "renaming " + temporary + " to " + path.string() + ": " + std::strerror(errno);
        unlink(temporary.c_str());
        return tl::unexpected(text);
    }
    if (const int directory_fd = open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); directory_fd >= 0) {
        fsync(directory_fd);  // some file systems refuse it; the rename stands
        close(directory_fd);
    }
    return {};
}

}  // namespace vnetct
