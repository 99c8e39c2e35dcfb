// Relays: a unix socket in the agent's host spoken to through the stream,
// byte for byte, within the channel's window; failures close the channel
// with the reason.
#include <gtest/gtest.h>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "peer.hpp"
#include "vnetct/remote/base64.hpp"

using namespace vnetct::remote;
using test_support::AgentUnderTest;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

class Listener {
  public:
    explicit Listener(const fs::path& path) : m_path(path) {
        m_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
        EXPECT_EQ(::bind(m_fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0) << std::strerror(errno);
        EXPECT_EQ(::listen(m_fd, 4), 0);
    }
    ~Listener() {
        ::close(m_fd);
        fs::remove(m_path);
    }
    int accept_one() {
        pollfd entry{m_fd, POLLIN, 0};
        EXPECT_EQ(::poll(&entry, 1, 10000), 1) << "nobody connected";
        return ::accept4(m_fd, nullptr, nullptr, SOCK_CLOEXEC);
    }

  private:
    fs::path m_path;
    int m_fd;
};

std::string read_exactly(int fd, std::size_t count) {
    std::string bytes;
    while (bytes.size() < count) {
        pollfd entry{fd, POLLIN, 0};
        if (::poll(&entry, 1, 10000) != 1) {
            break;
        }
        char chunk[65536];
        const ssize_t got = ::read(fd, chunk, std::min(sizeof chunk, count - bytes.size()));
        if (got <= 0) {
            break;
        }
        bytes.append(chunk, static_cast<std::size_t>(got));
    }
    return bytes;
}

// "same" or where two byte strings first differ (printing 300 KiB helps nobody).
std::string compare_bytes(const std::string& got, const std::string& want) {
    if (got == want) {
        return "same";
    }
    std::size_t offset = 0;
    while (offset < got.size() && offset < want.size() && got[offset] == want[offset]) {
        ++offset;
    }
    return "got " + std::to_string(got.size()) + " of " + std::to_string(want.size()) + " bytes, differing from offset " +
           std::to_string(offset);
}

std::string every_byte(std::size_t count) {
    std::string bytes;
    for (std::size_t i = 0; i < count; ++i) {
        bytes += static_cast<char>((i * 131 + i / 256) & 0xff);
    }
    return bytes;
}

class Relay_test : public ::testing::Test {
  protected:
    Relay_test() : m_dir(fs::temp_directory_path() / ("relay_test." + std::to_string(::getpid()))) {
        fs::create_directories(m_dir);
        m_options.window_bytes = 64 * 1024;
        m_options.max_frame_bytes = 16 * 1024;
    }
    ~Relay_test() override { fs::remove_all(m_dir); }

    // Sends `bytes` into channel `ch` in frames, never more than the window unacknowledged.
    void send_through(AgentUnderTest& agent, int ch, const std::string& bytes) {
        std::size_t sent = 0;
        std::size_t acked = 0;
        while (sent < bytes.size()) {
            while (sent < bytes.size() && sent - acked + 8192 <= m_options.window_bytes) {
                const std::string part = bytes.substr(sent, 8192);
                agent.send({{"ch", ch}, {"data", base64_encode(part)}});
                sent += part.size();
            }
            const json ack = agent.find([ch](const json& m) { return m.value("ch", -1) == ch && m.contains("ack"); },
                                        "an acknowledgement");
            if (ack.is_null()) {
                return;
            }
            acked += ack["ack"].get<std::size_t>();
        }
    }

    // Collects `count` bytes of channel `ch`'s data, acknowledging each frame.
    std::string receive_from(AgentUnderTest& agent, int ch, std::size_t count) {
        std::string bytes;
        while (bytes.size() < count) {
            const json frame = agent.find([ch](const json& m) { return m.value("ch", -1) == ch && m.contains("data"); },
                                          "data on channel " + std::to_string(ch));
            if (frame.is_null()) {
                break;
            }
            const auto part = base64_decode(frame["data"].get<std::string>());
            EXPECT_TRUE(part.has_value());
            EXPECT_LE(part->size(), m_options.max_frame_bytes);
            bytes += *part;
            agent.send({{"ch", ch}, {"ack", part->size()}});
        }
        return bytes;
    }

    fs::path m_dir;
    RemoteOptions m_options;
};

}  // namespace

TEST_F(Relay_test, ArbitraryBytesCrossBothWays) {
    Listener listener(m_dir / "l1.sock");
    AgentUnderTest m_sut(m_options);
    m_sut.next();
    const json opened = m_sut.request("open_relay", {{"path", (m_dir / "l1.sock").string()}});
    ASSERT_EQ(opened["ok"], true) << opened;
    const int ch = opened["ch"];
    const int peer = listener.accept_one();
    const std::string down = every_byte(300 * 1024);  // more than the window: the acks pace it
    std::string arrived;
    std::thread reader([&] { arrived = read_exactly(peer, down.size()); });
    send_through(m_sut, ch, down);
    reader.join();
    EXPECT_EQ(compare_bytes(arrived, down), "same");

    const std::string up = every_byte(200 * 1024 + 17);
    std::thread writer([&] {
        std::size_t written = 0;
        while (written < up.size()) {
            const ssize_t count = ::write(peer, up.data() + written, up.size() - written);
            if (count <= 0) {
                break;
            }
            written += static_cast<std::size_t>(count);
        }
    });
    EXPECT_EQ(compare_bytes(receive_from(m_sut, ch, up.size()), up), "same");
    writer.join();

    ::close(peer);
    const json closed = m_sut.find([ch](const json& m) { return m.value("event", "") == "closed" && m["ch"] == ch; },
                                   "the relay closed");
    EXPECT_EQ(closed["reason"], "the peer in L1 closed");
    EXPECT_EQ(m_sut.request("close_relay", {{"ch", ch}})["error"]["code"], "NoSuchChannel");
}

TEST_F(Relay_test, TheAgentReadsNoMoreThanTheWindowUntilAcknowledged) {
    Listener listener(m_dir / "l1.sock");
    AgentUnderTest m_sut(m_options);
    m_sut.next();
    const int ch = m_sut.request("open_relay", {{"path", (m_dir / "l1.sock").string()}})["ch"];
    const int peer = listener.accept_one();
    const std::string up = every_byte(m_options.window_bytes * 2);
    ASSERT_EQ(::write(peer, up.data(), up.size()), static_cast<ssize_t>(up.size()));
    std::size_t received = 0;
    for (;;) {  // frames until a quiet moment: no more than the window without acks
        const json frame = m_sut.try_find([ch](const json& m) { return m.value("ch", -1) == ch && m.contains("data"); },
                                          std::chrono::milliseconds(received < m_options.window_bytes ? 5000 : 300));
        if (frame.is_null()) {
            break;
        }
        received += base64_decode(frame["data"].get<std::string>())->size();
    }
    EXPECT_EQ(received, m_options.window_bytes);
    ::close(peer);
}

TEST_F(Relay_test, DataBeyondTheWindowClosesTheChannelNamingIt) {
    Listener listener(m_dir / "l1.sock");
    AgentUnderTest m_sut(m_options);
    m_sut.next();
    const int ch = m_sut.request("open_relay", {{"path", (m_dir / "l1.sock").string()}})["ch"];
    const int peer = listener.accept_one();  // never reads: the socket buffer fills, then the window
    const std::string chunk = every_byte(16 * 1024);
    json closed;
    for (int i = 0; i < 400 && closed.is_null(); ++i) {
        m_sut.send({{"ch", ch}, {"data", base64_encode(chunk)}});
        closed = m_sut.try_find([](const json& m) { return m.value("event", "") == "closed"; },
                                std::chrono::milliseconds(i < 399 ? 1 : 5000));
    }
    ASSERT_FALSE(closed.is_null());
    EXPECT_NE(closed["reason"].get<std::string>().find("window"), std::string::npos) << closed;
    ::close(peer);
}

TEST_F(Relay_test, BadDataAndUnknownChannelsAreErrors) {
    Listener listener(m_dir / "l1.sock");
    AgentUnderTest m_sut(m_options);
    m_sut.next();
    const int ch = m_sut.request("open_relay", {{"path", (m_dir / "l1.sock").string()}})["ch"];
    const int peer = listener.accept_one();
    m_sut.send({{"ch", 4242}, {"data", "AAAA"}});
    EXPECT_EQ(m_sut.next()["error"]["code"], "NoSuchChannel");
    m_sut.send({{"ch", ch}, {"data", "%%%%"}});
    const json closed = m_sut.next();
    EXPECT_EQ(closed["event"], "closed");
    EXPECT_NE(closed["reason"].get<std::string>().find("base64"), std::string::npos) << closed;
    ::close(peer);
}

TEST_F(Relay_test, ASocketThatAppearsWithinTheTimeoutIsConnectedAndOneThatDoesNotIsATimeout) {
    AgentUnderTest m_sut(m_options);
    m_sut.next();
    const json missing = m_sut.request("open_relay", {{"path", (m_dir / "never.sock").string()}, {"timeout_s", 0.3}});
    EXPECT_EQ(missing["error"]["code"], "Timeout");
    EXPECT_NE(missing["error"]["message"].get<std::string>().find("never.sock"), std::string::npos) << missing;
    m_sut.send({{"id", 9}, {"op", "open_relay"}, {"path", (m_dir / "late.sock").string()}, {"timeout_s", 10}});
    Listener listener(m_dir / "late.sock");  // after the request: the agent retries until it is there
    const json opened = m_sut.reply(9);
    EXPECT_EQ(opened["ok"], true) << opened;
    ::close(listener.accept_one());
}
