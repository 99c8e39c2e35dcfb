// The harness's end of the daemon's stream in tests: serve() runs in a thread
// on one end of a socketpair; this end writes lines and reads what comes
// back, each read with a deadline.
#pragma once

#include <chrono>
#include <deque>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "vnetct/remote/agent.hpp"

namespace vnetct::remote::test_support {

class AgentUnderTest {
  public:
    explicit AgentUnderTest(RemoteOptions options = {});
    ~AgentUnderTest();
    AgentUnderTest(const AgentUnderTest&) = delete;
    AgentUnderTest& operator=(const AgentUnderTest&) = delete;

    void send(const nlohmann::json& message) { send_raw(message.dump() + "\n"); }
    void send_raw(const std::string& bytes);
    // The next message (in arrival order), or a failed test naming what was awaited.
    nlohmann::json next(std::chrono::milliseconds within = std::chrono::seconds(10));
    // The reply to request `id`; other messages are kept for later next()/find() calls.
    nlohmann::json reply(const nlohmann::json& id, std::chrono::milliseconds within = std::chrono::seconds(10));
    // The first message matching `predicate`, looking at kept ones first;
    // null when none comes `within` (try_find), or a failed test naming `what` (find).
    template <typename Predicate>
    nlohmann::json try_find(Predicate&& predicate, std::chrono::milliseconds within);
    template <typename Predicate>
    nlohmann::json find(Predicate&& predicate, const std::string& what,
                        std::chrono::milliseconds within = std::chrono::seconds(10)) {
        nlohmann::json found = try_find(predicate, within);
        if (found.is_null()) {
            std::string seen;
            for (const auto& kept : m_kept) {
                seen += kept.dump().substr(0, 120) + "; ";
            }
            ADD_FAILURE() << what << " not seen within " << within.count() << " ms; seen: " << seen;
        }
        return found;
    }
    // Sends {"id": id, "op": op, ...params} and returns the reply.
    nlohmann::json request(const std::string& op, nlohmann::json params = nlohmann::json::object());
    // Closes the harness's end: the agent sees the end of input.
    void hang_up();
    // serve()'s return value once it returned (joins the thread).
    int join();

  private:
    bool read_message(nlohmann::json& out, std::chrono::steady_clock::time_point deadline);
    int m_fd = -1;
    std::thread m_thread;
    int m_exit_code = -1;
    std::string m_buffer;
    std::deque<nlohmann::json> m_kept;
    int m_next_id = 1;
};

template <typename Predicate>
nlohmann::json AgentUnderTest::try_find(Predicate&& predicate, std::chrono::milliseconds within) {
    for (auto it = m_kept.begin(); it != m_kept.end(); ++it) {
        if (predicate(*it)) {
            nlohmann::json found = *it;
            m_kept.erase(it);
            return found;
        }
    }
    const auto deadline = std::chrono::steady_clock::now() + within;
    nlohmann::json message;
    while (read_message(message, deadline)) {
        if (predicate(message)) {
            return message;
        }
        m_kept.push_back(message);
    }
    return nullptr;
}

}  // namespace vnetct::remote::test_support
