#include <gtest/gtest.h>

#include "peer.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace vnetct::remote::test_support {

AgentUnderTest::AgentUnderTest(RemoteOptions options) {
    int ends[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0) {
        throw std::runtime_error("socketpair failed");
    }
    m_fd = ends[0];
    const int agent_fd = ends[1];
    m_thread = std::thread([this, options, agent_fd] {
        m_exit_code = serve(options, agent_fd, agent_fd, -1);
        ::close(agent_fd);
    });
}

AgentUnderTest::~AgentUnderTest() {
    hang_up();
    join();
}

void AgentUnderTest::send_raw(const std::string& bytes) {
    std::size_t sent = 0;
    while (sent < bytes.size()) {
        const ssize_t count = ::send(m_fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
        if (count < 0 && errno == EINTR) {
            continue;
        }
        ASSERT_GT(count, 0) << "the agent's end does not take bytes";
        sent += static_cast<std::size_t>(count);
    }
}

bool AgentUnderTest::read_message(nlohmann::json& out, std::chrono::steady_clock::time_point deadline) {
    for (;;) {
        if (const auto newline = m_buffer.find('\n'); newline != std::string::npos) {
            const std::string line = m_buffer.substr(0, newline);
            m_buffer.erase(0, newline + 1);
            out = nlohmann::json::parse(line, nullptr, false);
            EXPECT_FALSE(out.is_discarded()) << "the agent sent a line that is not JSON: " << line.substr(0, 200);
            return !out.is_discarded();
        }
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0 || m_fd < 0) {
            return false;
        }
        pollfd entry{m_fd, POLLIN, 0};
        if (::poll(&entry, 1, static_cast<int>(left.count())) <= 0) {
            continue;
        }
        char chunk[65536];
        const ssize_t count = ::read(m_fd, chunk, sizeof chunk);
        if (count <= 0) {
            return false;
        }
        m_buffer.append(chunk, static_cast<std::size_t>(count));
    }
}

nlohmann::json AgentUnderTest::next(std::chrono::milliseconds within) {
    if (!m_kept.empty()) {
        nlohmann::json message = m_kept.front();
        m_kept.pop_front();
        return message;
    }
    nlohmann::json message;
    if (!read_message(message, std::chrono::steady_clock::now() + within)) {
        ADD_FAILURE() << "no message within " << within.count() << " ms";
        return nullptr;
    }
    return message;
}

nlohmann::json AgentUnderTest::reply(const nlohmann::json& id, std::chrono::milliseconds within) {
    return find([&id](const nlohmann::json& message) { return message.contains("ok") && message["id"] == id; },
                "the reply to request " + id.dump(), within);
}

nlohmann::json AgentUnderTest::request(const std::string& op, nlohmann::json params) {
    const int id = m_next_id++;
    params["id"] = id;
    params["op"] = op;
    send(params);
    return reply(id);
}

void AgentUnderTest::hang_up() {
    if (m_fd >= 0) {
        ::close(m_fd);
        m_fd = -1;
    }
}

int AgentUnderTest::join() {
    if (m_thread.joinable()) {
        m_thread.join();
    }
    return m_exit_code;
}

}  // namespace vnetct::remote::test_support
