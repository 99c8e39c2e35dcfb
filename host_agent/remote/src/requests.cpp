// The requests the daemon answers. Everything in a request is checked before
// it is used: a missing or mistyped field is BadRequest naming the request
// and the field.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "session.hpp"
#include "vnetct/host_agent/json_line_channel.hpp"
#include "vnetct/remote/base64.hpp"
#include "vnetct/sriov/json_codec.hpp"

extern char** environ;

namespace vnetct::remote {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr std::size_t kMaxPath = 4096;
constexpr std::size_t kMaxArgs = 256;
constexpr std::size_t kMaxArgBytes = 64 * 1024;

constexpr std::array<std::pair<const char*, int>, 10> kSignals{{{"TERM", SIGTERM}, {"KILL", SIGKILL}, {"INT", SIGINT},
    {"HUP", SIGHUP}, {"QUIT", SIGQUIT}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"STOP", SIGSTOP}, {"CONT", SIGCONT},
    {"ABRT", SIGABRT}}};

tl::unexpected<ReplyError> bad(const std::string& op, const std::string& detail) {
    return tl::unexpected(reply_error(RemoteErrc::BadRequest, op + ": " + detail));
}

std::string brief_json(const json& value) {
    std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
    return text.size() > 80 ? text.substr(0, 80) + "..." : text;
}

// A string field: present unless `fallback`, a string, at most `limit` bytes, no NUL.
tl::expected<std::string, ReplyError> text_field(const json& request, const std::string& op, const char* key,
                                                 std::size_t limit, std::optional<std::string> fallback = {}) {
    const auto found = request.find(key);
    if (found == request.end() || found->is_null()) {
        if (fallback) {
            return *fallback;
        }
        return bad(op, std::string("\"") + key + "\" is missing");
    }
    if (!found->is_string()) {
        return bad(op, std::string("\"") + key + "\" must be a string, not " + brief_json(*found));
    }
    const auto& text = found->get_ref<const std::string&>();
    if (text.size() > limit) {
        return bad(op, std::string("\"") + key + "\" is " + std::to_string(text.size()) + " bytes (limit " +
                           std::to_string(limit) + ")");
    }
    if (text.find('\0') != std::string::npos) {
        return bad(op, std::string("\"") + key + "\" holds a NUL byte");
    }
    return text;
}

tl::expected<long long, ReplyError> integer_field(const json& request, const std::string& op, const char* key,
                                                  long long low, long long high, std::optional<long long> fallback = {}) {
    const auto found = request.find(key);
    if (found == request.end() || found->is_null()) {
        if (fallback) {
            return *fallback;
        }
        return bad(op, std::string("\"") + key + "\" is missing");
    }
    if (!found->is_number_integer() || found->get<long long>() < low || found->get<long long>() > high) {
        return bad(op, std::string("\"") + key + "\" must be an integer in [" + std::to_string(low) + ", " +
                           std::to_string(high) + "], not " + brief_json(*found));
    }
    return found->get<long long>();
}

tl::expected<double, ReplyError> seconds_field(const json& request, const std::string& op, const char* key,
                                               double high, double fallback) {
    const auto found = request.find(key);
    if (found == request.end() || found->is_null()) {
        return fallback;
    }
    if (!found->is_number() || !std::isfinite(found->get<double>()) || found->get<double>() < 0 ||
        found->get<double>() > high) {
        return bad(op, std::string("\"") + key + "\" must be a number of seconds in [0, " + std::to_string(high) +
                           "], not " + brief_json(*found));
    }
    return found->get<double>();
}

Clock::time_point after(double seconds) {
    return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

std::string errno_text(const std::string& what, int error) { return what + ": " + std::strerror(error); }

}  // namespace

void Session::dispatch(const json& message) {
    if (!message.is_object()) {
        reply(nullptr, bad("the line", "not a JSON object: " + brief_json(message)));
        return;
    }
    if (message.contains("ch") && !message.contains("op")) {
        channel_frame(message);
        return;
    }
    const auto id = message.find("id");
    if (id == message.end() || !(id->is_number_integer() || id->is_string())) {
        reply(nullptr, bad("the request " + brief_json(message), "\"id\" (an integer or a string) is missing"));
        return;
    }
    const auto op = message.find("op");
    if (op == message.end() || !op->is_string()) {
        reply(*id, bad("the request", "\"op\" (a string) is missing"));
        return;
    }
    Handled handled = [&]() -> Handled {
        try {
            return handle(op->get<std::string>(), *id, message);
        } catch (const std::exception& error) {  // a check missed: an error reply, never a crash
            return tl::unexpected(reply_error(RemoteErrc::BadRequest, op->get<std::string>() + ": " + error.what()));
        }
    }();
    if (!handled || *handled) {
        reply(*id, handled);
    }
}

Handled Session::handle(const std::string& op, const json& id, const json& request) {
    if (op == "hello") {
        return hello();
    }
    if (op == "spawn") {
        return spawn(request);
    }
    if (op == "signal") {
        return signal(request);
    }
    if (op == "wait") {
        return wait(id, request);
    }
    if (op == "write_file") {
        return write_file(request);
    }
    if (op == "read_file") {
        return read_file(request);
    }
    if (op == "open_relay") {
        return open_relay(id, request);
    }
    if (op == "close_relay") {
        return close_relay(request);
    }
    if (op == "sriov_probe" || op == "sriov_prepare" || op == "sriov_restore") {
        return sriov(op, request);
    }
    return tl::unexpected(reply_error(RemoteErrc::UnknownRequest,
                                      "\"" + op.substr(0, 64) + "\" (known: hello, spawn, signal, wait, write_file, "
                                      "read_file, open_relay, close_relay, sriov_probe, sriov_prepare, sriov_restore)"));
}

json Session::hello() const {
    utsname names{};
    ::uname(&names);
    json pfs = json::array();
    sriov::Sysfs sysfs(m_options.sysfs_root);
    std::error_code error;
    std::vector<std::string> netdevs;
    for (const auto& entry : fs::directory_iterator(m_options.sysfs_root / "class" / "net", error)) {
        netdevs.push_back(entry.path().filename().string());
    }
    std::sort(netdevs.begin(), netdevs.end());
    for (const std::string& netdev : netdevs) {
        auto total = sysfs.total_vfs(netdev);
        auto address = sysfs.pf_address(netdev);
        if (!total || !address) {
            continue;  // not an SR-IOV PF
        }
        auto num = sysfs.num_vfs(netdev);
        auto driver = sysfs.driver(*address);
        pfs.push_back({{"netdev", netdev}, {"address", *address}, {"total_vfs", *total},
                       {"num_vfs", num ? *num : -1}, {"driver", driver ? *driver : ""}});
    }
    timespec boot{};
    ::clock_gettime(CLOCK_BOOTTIME, &boot);  // how long the host has been up: its boot, when it is a guest
    return {{"agent", kAgentName}, {"protocol", kProtocolVersion}, {"kernel", names.release},
            {"uptime_s", static_cast<double>(boot.tv_sec) + static_cast<double>(boot.tv_nsec) / 1e9},
            {"machine", names.machine}, {"hostname", names.nodename}, {"pid", ::getpid()},
            {"pfs", pfs},
            {"limits", {{"max_line_bytes", m_options.max_line_bytes}, {"window_bytes", m_options.window_bytes},
                        {"max_frame_bytes", m_options.max_frame_bytes}, {"max_file_chunk", m_options.max_file_chunk},
                        {"max_processes", m_options.max_processes}, {"max_channels", m_options.max_channels}}}};
}

Handled Session::spawn(const json& request) {
    const auto argv = request.find("argv");
    if (argv == request.end() || !argv->is_array() || argv->empty() || argv->size() > kMaxArgs) {
        return bad("spawn", "\"argv\" must be a list of 1 to " + std::to_string(kMaxArgs) + " strings");
    }
    host_agent::SpawnOptions options;
    for (const auto& argument : *argv) {
        if (!argument.is_string() || argument.get_ref<const std::string&>().size() > kMaxArgBytes ||
            argument.get_ref<const std::string&>().find('\0') != std::string::npos) {
            return bad("spawn", "\"argv\" holds " + brief_json(argument) + ": each must be a string without NUL, "
                                "at most " + std::to_string(kMaxArgBytes) + " bytes");
        }
        options.argv.push_back(argument.get<std::string>());
    }
    if (const auto env = request.find("env"); env != request.end() && !env->is_null()) {
        if (!env->is_object() || env->size() > kMaxArgs) {
            return bad("spawn", "\"env\" must be an object of at most " + std::to_string(kMaxArgs) + " strings");
        }
        std::map<std::string, std::string> merged;
        for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
            const std::string text = *entry;
            const auto equals = text.find('=');
            merged[text.substr(0, equals)] = equals == std::string::npos ? "" : text.substr(equals + 1);
        }
        for (const auto& [name, value] : env->items()) {
            if (name.empty() || name.find_first_of(std::string("=\0", 2)) != std::string::npos || !value.is_string() ||
                value.get_ref<const std::string&>().find('\0') != std::string::npos) {
                return bad("spawn", "\"env\" entry " + brief_json(name) + ": a name without '=' and a string value");
            }
            merged[name] = value.get<std::string>();
        }
        options.env.emplace();
        for (const auto& [name, value] : merged) {
            options.env->push_back(name + "=" + value);
        }
    }
    // stdout / stderr: absent (/dev/null), {"file": PATH} (appended) or {"stream": true} (a channel)
    std::array<int, 2> read_ends{-1, -1};
    std::array<int, 2> write_ends{-1, -1};
    const auto close_pipes = [&] {
        for (int fd : read_ends) { if (fd >= 0) ::close(fd); }
        for (int fd : write_ends) { if (fd >= 0) ::close(fd); }
    };
    const std::array<const char*, 2> streams{"stdout", "stderr"};
    for (std::size_t i = 0; i < streams.size(); ++i) {
        const auto found = request.find(streams[i]);
        if (found == request.end() || found->is_null()) {
            continue;
        }
        std::string& path = i == 0 ? options.stdout_path : options.stderr_path;
        if (found->is_object() && found->contains("file")) {
            auto file = text_field(*found, std::string("spawn ") + streams[i], "file", kMaxPath);
            if (!file) {
                close_pipes();
                return tl::unexpected(file.error());
            }
            path = *file;
        } else if (found->is_object() && found->value("stream", false) == true) {
            if (m_channels.size() + 2 > m_options.max_channels) {
                close_pipes();
                return tl::unexpected(reply_error(RemoteErrc::LimitReached, "spawn: " + std::to_string(m_channels.size()) +
                                                                                " channels open"));
            }
            int ends[2];
            if (::pipe2(ends, O_CLOEXEC) != 0) {
                close_pipes();
                return tl::unexpected(reply_error(RemoteErrc::FileFailed, errno_text("spawn: pipe", errno)));
            }
            ::fcntl(ends[0], F_SETFL, O_NONBLOCK);
            read_ends[i] = ends[0];
            write_ends[i] = ends[1];
            (i == 0 ? options.stdout_fd : options.stderr_fd) = ends[1];
        } else {
            close_pipes();
            return bad("spawn", std::string("\"") + streams[i] + "\" must be {\"file\": PATH} or {\"stream\": true}, "
                                "not " + brief_json(*found));
        }
    }
    if (m_processes.size() >= m_options.max_processes) {  // forget ended processes nobody waits for
        for (auto it = m_processes.begin(); it != m_processes.end();) {
            it = it->second.status && it->second.waits.empty() ? m_processes.erase(it) : std::next(it);
        }
    }
    if (m_processes.size() >= m_options.max_processes) {
        close_pipes();
        return tl::unexpected(reply_error(RemoteErrc::LimitReached, "spawn: " + std::to_string(m_processes.size()) +
                                                                        " processes running or waited for"));
    }
    auto process = host_agent::Process::spawn(options);
    for (int& fd : write_ends) {
        if (fd >= 0) {
            ::close(fd);
            fd = -1;
        }
    }
    if (!process) {
        close_pipes();
        return tl::unexpected(reply_error(process.error()));
    }
    const int id = m_next_process++;
    const pid_t pid = process->pid();
    m_processes.emplace(id, ProcessEntry{std::move(*process), options.argv.front(), std::nullopt, {}});
    json result = {{"process", id}, {"pid", pid}};
    for (std::size_t i = 0; i < streams.size(); ++i) {
        if (read_ends[i] >= 0) {
            result[std::string(streams[i]) + "_ch"] =
                add_channel(read_ends[i], ChannelKind::Output, "process " + std::to_string(id) + " " + streams[i]);
        }
    }
    return result;
}

Handled Session::signal(const json& request) {
    auto id = integer_field(request, "signal", "process", 1, 1LL << 30);
    if (!id) {
        return tl::unexpected(id.error());
    }
    const auto entry = m_processes.find(static_cast<int>(*id));
    if (entry == m_processes.end()) {
        return tl::unexpected(reply_error(RemoteErrc::NoSuchProcess, "signal: process " + std::to_string(*id)));
    }
    int number = 0;
    const auto given = request.find("signal");
    if (given != request.end() && given->is_string()) {
        for (const auto& [name, value] : kSignals) {
            if (*given == name || *given == std::string("SIG") + name) {
                number = value;
            }
        }
    } else if (given != request.end() && given->is_number_integer() && given->get<long long>() >= 1 &&
               given->get<long long>() <= 64) {
        number = given->get<int>();
    }
    if (number == 0) {
        return bad("signal", "\"signal\" must be a name (TERM, KILL, INT, HUP, QUIT, USR1, USR2, STOP, CONT, ABRT) "
                             "or a number 1-64, not " + (given == request.end() ? std::string("nothing") : brief_json(*given)));
    }
    if (auto sent = entry->second.process.signal(number); !sent) {
        return tl::unexpected(reply_error(sent.error()));
    }
    return json{{"process", *id}, {"signal", number}};
}

Handled Session::wait(const json& id, const json& request) {
    auto process = integer_field(request, "wait", "process", 1, 1LL << 30);
    auto seconds = seconds_field(request, "wait", "timeout_s", m_options.max_wait_seconds, 0.0);
    if (!process || !seconds) {
        return tl::unexpected(!process ? process.error() : seconds.error());
    }
    const auto entry = m_processes.find(static_cast<int>(*process));
    if (entry == m_processes.end()) {
        return tl::unexpected(reply_error(RemoteErrc::NoSuchProcess, "wait: process " + std::to_string(*process)));
    }
    reap(entry->first);
    if (entry->second.status) {
        const auto& status = *entry->second.status;
        return json{{"process", *process}, {"pid", entry->second.process.pid()}, {"code", status.code},
                    {"signal", status.signal}, {"describe", status.describe()}};
    }
    entry->second.waits.push_back(PendingWait{id, after(*seconds), *seconds});
    return std::optional<json>{};
}

Handled Session::write_file(const json& request) {
    auto path = text_field(request, "write_file", "path", kMaxPath);
    auto data = text_field(request, "write_file", "data", (m_options.max_file_chunk + 2) / 3 * 4);
    auto mode = integer_field(request, "write_file", "mode", 0, 07777, 0644);
    const auto append = request.find("append");
    if (!path || !data || !mode) {
        return tl::unexpected(!path ? path.error() : !data ? data.error() : mode.error());
    }
    if (append != request.end() && !append->is_boolean()) {
        return bad("write_file", "\"append\" must be true or false");
    }
    const auto bytes = base64_decode(*data);
    if (!bytes) {
        return tl::unexpected(reply_error(RemoteErrc::BadData, "write_file " + *path + ": \"data\""));
    }
    const bool appending = append != request.end() && append->get<bool>();
    const int fd = ::open(path->c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (appending ? O_APPEND : O_TRUNC),
                          static_cast<mode_t>(*mode));
    if (fd < 0) {
        return tl::unexpected(reply_error(RemoteErrc::FileFailed, errno_text("write_file: open " + *path, errno)));
    }
    std::size_t written = 0;
    while (written < bytes->size()) {
        const ssize_t count = ::write(fd, bytes->data() + written, bytes->size() - written);
        if (count < 0 && errno == EINTR) {
            continue;
        }
        if (count <= 0) {
            const int error = errno;
            ::close(fd);
            return tl::unexpected(reply_error(RemoteErrc::FileFailed, errno_text("write_file: write " + *path, error)));
        }
        written += static_cast<std::size_t>(count);
    }
    if (::close(fd) != 0) {
        return tl::unexpected(reply_error(RemoteErrc::FileFailed, errno_text("write_file: close " + *path, errno)));
    }
    return json{{"path", *path}, {"bytes", written}};
}

Handled Session::read_file(const json& request) {
    auto path = text_field(request, "read_file", "path", kMaxPath);
    auto offset = integer_field(request, "read_file", "offset", 0, 1LL << 62, 0);
    const auto limit = static_cast<long long>(m_options.max_file_chunk);
    auto length = integer_field(request, "read_file", "length", 1, limit, limit);
    if (!path || !offset || !length) {
        return tl::unexpected(!path ? path.error() : !offset ? offset.error() : length.error());
    }
    const int fd = ::open(path->c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        return tl::unexpected(reply_error(RemoteErrc::FileFailed, errno_text("read_file: open " + *path, errno)));
    }
    struct stat status {};
    ::fstat(fd, &status);
    std::string bytes(static_cast<std::size_t>(*length), '\0');
    std::size_t got = 0;
    bool eof = false;
    while (got < bytes.size()) {
        const ssize_t count = ::pread(fd, bytes.data() + got, bytes.size() - got, static_cast<off_t>(*offset) +
                                                                                  static_cast<off_t>(got));
        if (count < 0 && errno == EINTR) {
            continue;
        }
        if (count < 0) {
            const int error = errno;
            ::close(fd);
            return tl::unexpected(reply_error(RemoteErrc::FileFailed, errno_text("read_file: read " + *path, error)));
        }
        if (count == 0) {
            eof = true;
            break;
        }
        got += static_cast<std::size_t>(count);
    }
    ::close(fd);
    bytes.resize(got);
    return json{{"path", *path}, {"offset", *offset}, {"data", base64_encode(bytes)}, {"bytes", got},
                {"size", static_cast<long long>(status.st_size)}, {"eof", eof}};
}

Handled Session::open_relay(const json& id, const json& request) {
    auto path = text_field(request, "open_relay", "path", kMaxPath);
    auto seconds = seconds_field(request, "open_relay", "timeout_s", m_options.max_wait_seconds, 0.0);
    if (!path || !seconds) {
        return tl::unexpected(!path ? path.error() : seconds.error());
    }
    if (m_channels.size() >= m_options.max_channels) {
        return tl::unexpected(reply_error(RemoteErrc::LimitReached,
                                          "open_relay: " + std::to_string(m_channels.size()) + " channels open"));
    }
    m_relays.push_back(PendingRelay{id, *path, after(*seconds), Clock::now(), *seconds});
    if (try_relay(m_relays.back())) {
        m_relays.pop_back();
    }
    return std::optional<json>{};
}

bool Session::try_relay(PendingRelay& relay) {
    // One attempt: a socket not there yet or nobody listening is tried again until the deadline.
    auto fd = host_agent::connect_unix_socket(relay.path, Clock::now());
    if (fd) {
        const int ch = add_channel(*fd, ChannelKind::Relay, "relay to " + relay.path);
        reply(relay.id, json{{"ch", ch}, {"path", relay.path}});
        return true;
    }
    if (fd.error().code != host_agent::HostErrc::Timeout) {
        reply(relay.id, tl::unexpected(reply_error(fd.error())));
        return true;
    }
    if (Clock::now() >= relay.deadline) {
        reply(relay.id, tl::unexpected(reply_error(RemoteErrc::Timeout,
                                                   "open_relay: " + relay.path + " not connectable within " +
                                                       std::to_string(relay.seconds) + " s (" + fd.error().detail + ")")));
        return true;
    }
    relay.next_try = std::min(relay.deadline, Clock::now() + std::chrono::milliseconds(50));
    return false;
}

Handled Session::close_relay(const json& request) {
    auto ch = integer_field(request, "close_relay", "ch", 1, 1LL << 30);
    if (!ch) {
        return tl::unexpected(ch.error());
    }
    const auto found = m_channels.find(static_cast<int>(*ch));
    if (found == m_channels.end()) {
        return tl::unexpected(reply_error(RemoteErrc::NoSuchChannel, "close_relay: channel " + std::to_string(*ch)));
    }
    const std::size_t unsent = found->second.to_fd.size();
    close_channel(found->first, "closed by the harness", false);
    return json{{"ch", *ch}, {"unsent_bytes", unsent}};
}

Handled Session::sriov(const std::string& op, const json& request) {
    sriov::Sysfs sysfs(m_options.sysfs_root);
    sriov::VfLink link(m_options.link_netns);
    if (op == "sriov_probe") {
        auto pf = text_field(request, op, "pf", 64);
        if (!pf) {
            return tl::unexpected(pf.error());
        }
        auto address = sysfs.pf_address(*pf);
        auto total = sysfs.total_vfs(*pf);
        auto num = sysfs.num_vfs(*pf);
        for (const auto* error : {address ? nullptr : &address.error(), total ? nullptr : &total.error(),
                                  num ? nullptr : &num.error()}) {
            if (error != nullptr) {
                return tl::unexpected(reply_error(*error));
            }
        }
        return json{{"pf", *pf}, {"address", *address}, {"total_vfs", *total}, {"num_vfs", *num},
                    {"vfio_pci_loaded", sysfs.driver_loaded("vfio-pci")}};
    }
    auto journal_path = text_field(request, op, "journal", kMaxPath);
    if (!journal_path) {
        return tl::unexpected(journal_path.error());
    }
    if (op == "sriov_prepare") {
        const auto found = request.find("request");
        auto setup = sriov::setup_request_from_json(found == request.end() ? json() : *found);
        if (!setup) {
            return tl::unexpected(reply_error(setup.error()));
        }
        sriov::Journal journal(*journal_path);
        auto prepared = sriov::prepare(*setup, sysfs, link, journal);
        if (!prepared) {
            return tl::unexpected(reply_error(prepared.error()));  // the changes made stand: sriov_restore
        }
        return json{{"vfs", sriov::prepared_to_json(*prepared)}};
    }
    if (!fs::exists(*journal_path)) {
        return sriov::restore_report_to_json({}, sriov::Journal());
    }
    auto journal = sriov::Journal::load(*journal_path);
    if (!journal) {
        return tl::unexpected(reply_error(journal.error()));
    }
    return sriov::restore_report_to_json(journal->restore(sysfs, link), *journal);
}

}  // namespace vnetct::remote
