#include "vnetct/host_agent/qmp_interposer.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "fake_peer.hpp"
#include "vnetct/host_agent/qmp_client.hpp"

using namespace vnetct::host_agent;
using namespace std::chrono_literals;
using vnetct::host_agent::testing::FakePeer;
using Json = nlohmann::json;

namespace {

const Json greeting = Json::parse(
    R"({"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""}, "capabilities": ["oob"]}})");

Json event(const std::string& name, const Json& data = nullptr) {
    Json message{{"event", name}, {"timestamp", {{"seconds", 1714560000}, {"microseconds", 250000}}}};
    if (!data.is_null()) {
        message["data"] = data;
    }
    return message;
}

Json reply(int id, const Json& value = Json::object()) { return {{"return", value}, {"id", id}}; }

// A client that sees the bytes as they come, for byte-for-byte checks.
class RawClient {
  public:
    explicit RawClient(const std::string& path) {
        auto fd = connect_unix_socket(path, Clock::now() + 10s);
        if (fd) {
            m_fd = *fd;
        }
    }
    ~RawClient() {
        if (m_fd >= 0) {
            ::close(m_fd);
        }
    }
    RawClient(const RawClient&) = delete;
    RawClient& operator=(const RawClient&) = delete;

    void send(const std::string& bytes) const {
        ASSERT_EQ(::send(m_fd, bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
    }

    // The next `lines` lines, with their line ends; fewer when the deadline
    // passes or the interposer hangs up.
    std::string read_lines(std::size_t lines, Deadline deadline = Clock::now() + 10s) {
        std::string text;
        while (lines > 0) {
            const std::size_t newline = m_pending.find('\n');
            if (newline != std::string::npos) {
                text += m_pending.substr(0, newline + 1);
                m_pending.erase(0, newline + 1);
                --lines;
                continue;
            }
            if (!read_more(deadline)) {
                break;
            }
        }
        return text;
    }

    // True when the interposer hangs up before `deadline`.
    bool hung_up(Deadline deadline) {
        while (read_more(deadline)) {
        }
        return m_eof;
    }

  private:
    bool read_more(Deadline deadline) {
        pollfd entry{m_fd, POLLIN, 0};
        if (m_eof || ::poll(&entry, 1, poll_timeout_ms(deadline)) <= 0) {
            return false;
        }
        char chunk[4096];
        const ssize_t got = ::read(m_fd, chunk, sizeof chunk);
        if (got <= 0) {
            m_eof = true;
            return false;
        }
        m_pending.append(chunk, static_cast<std::size_t>(got));
        return true;
    }

    int m_fd = -1;
    std::string m_pending;
    bool m_eof = false;
};

std::vector<std::string> names_of(const std::vector<QmpEvent>& events) {
    std::vector<std::string> names;
    for (const auto& event : events) {
        names.push_back(event.name);
    }
    return names;
}

}  // namespace

class QmpInterposer_test : public ::testing::Test {
  protected:
    void TearDown() override {
        EXPECT_EQ(m_peer.finish(), std::vector<std::string>{});
        m_client.reset();
        if (m_sut) {
            m_sut->stop();
        }
    }

    // QEMU's side of greeting + capabilities negotiation (command id 1).
    FakePeer& handshake() {
        return m_peer.send(greeting).expect({{"execute", "qmp_capabilities"}, {"id", 1}}).send(reply(1));
    }

    void start(const Json& plan, std::size_t max_message_size = default_max_message_size) {
        auto sut = QmpInterposer::start(listen_path(), m_peer.socket_path(), plan, log_path(), max_message_size);
        ASSERT_TRUE(sut.has_value()) << sut.error().message();
        m_sut.emplace(std::move(*sut));
    }

    void connect() {
        auto client = QmpClient::connect(listen_path(), "", Clock::now() + 10s);
        ASSERT_TRUE(client.has_value()) << client.error().message();
        m_client.emplace(std::move(*client));
    }

    void wait_event(const std::string& name, const Json& match = nullptr) {
        auto found = m_client->wait_event(name, match, 0, Clock::now() + 10s);
        ASSERT_TRUE(found.has_value()) << found.error().message();
    }

    // "rule:action" for every record of the action log.
    [[nodiscard]] std::vector<std::string> actions() const {
        std::vector<std::string> list;
        for (const auto& record : m_sut->actions()) {
            list.push_back(record["rule"].get<std::string>() + ":" + record["action"].get<std::string>());
        }
        return list;
    }

    [[nodiscard]] std::string listen_path() const { return m_peer.dir() + "/interposer.sock"; }
    [[nodiscard]] std::string log_path() const { return m_peer.dir() + "/interposer.jsonl"; }

    FakePeer m_peer;
    std::optional<QmpInterposer> m_sut;
    std::optional<QmpClient> m_client;
};

TEST_F(QmpInterposer_test, UntouchedMessagesPassByteForByteBothWays) {
    const std::string greeting_line = R"({"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}}, )"
                                      R"("capabilities": [ ]}})"
                                      "\r\n";
    const std::string replies = "{\"return\": {}, \"id\": 1}\r\n"
                                "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"STOP\"}\r\n"
                                "not JSON at all\r\n";
    m_peer.send_raw(greeting_line)
        .expect({{"execute", "qmp_capabilities"}})
        .send_raw(replies)
        .expect({{"execute", "query-status"}})
        .send_raw("{\"return\": {\"status\": \"running\", \"running\": true}, \"id\": \"a\"}\n");
    m_peer.start();
    start({{"rules", {{{"name", "unrelated"}, {"event", "RESUME"}, {"action", "drop"}}}}});
    RawClient client(listen_path());

    EXPECT_EQ(client.read_lines(1), greeting_line);
    client.send("{ \"execute\":\"qmp_capabilities\" ,\"id\":1}\n");
    EXPECT_EQ(client.read_lines(3), replies);
    client.send("{\"execute\": \"query-status\", \"id\": \"a\"}\r\n");
    EXPECT_EQ(client.read_lines(1), "{\"return\": {\"status\": \"running\", \"running\": true}, \"id\": \"a\"}\n");
    EXPECT_EQ(m_peer.finish(), std::vector<std::string>{});
    EXPECT_EQ(m_peer.received(), (std::vector<std::string>{"{ \"execute\":\"qmp_capabilities\" ,\"id\":1}",
                                                           "{\"execute\": \"query-status\", \"id\": \"a\"}\r"}));
    EXPECT_EQ(m_sut->actions(), Json::array());
}

TEST_F(QmpInterposer_test, DropHidesTheMatchingEventAndLogsIt) {
    handshake()
        .send(event("MIGRATION", {{"status", "setup"}}))
        .send(event("MIGRATION", {{"status", "wait-unplug"}}))
        .send(event("MIGRATION", {{"status", "active"}}))
        .send(event("RESUME"));
    m_peer.start();
    start({{"rules",
            {{{"name", "no-wait-unplug"}, {"event", "MIGRATION"}, {"data", {{"status", "wait-unplug"}}},
              {"action", "drop"}}}}});
    connect();
    wait_event("RESUME");

    EXPECT_EQ(names_of(m_client->events()), (std::vector<std::string>{"MIGRATION", "MIGRATION", "RESUME"}));
    EXPECT_EQ(m_client->events()[0].data["status"], "setup");
    EXPECT_EQ(m_client->events()[1].data["status"], "active");
    const Json log = m_sut->actions();
    ASSERT_EQ(log.size(), 1U);
    EXPECT_EQ(log[0]["rule"], "no-wait-unplug");
    EXPECT_EQ(log[0]["action"], "dropped");
    EXPECT_EQ(log[0]["message"], event("MIGRATION", {{"status", "wait-unplug"}}));
    EXPECT_GT(log[0]["host_ns"].get<std::int64_t>(), 0);
    // The same record, as a JSON line, in the log file.
    std::ifstream file(log_path());
    std::string line;
    ASSERT_TRUE(std::getline(file, line));
    EXPECT_EQ(Json::parse(line), log[0]);
    EXPECT_FALSE(std::getline(file, line));
}

TEST_F(QmpInterposer_test, DelayedEventArrivesAfterALaterOne) {
    handshake()
        .send(event("UNPLUG_PRIMARY", {{"device-id", "hostdev0"}}))
        .send(event("MIGRATION", {{"status", "wait-unplug"}}));
    m_peer.start();
    start({{"rules", {{{"name", "late-unplug"}, {"event", "UNPLUG_PRIMARY"}, {"action", "delay"}, {"ms", 1000}}}}});
    connect();
    wait_event("UNPLUG_PRIMARY");

    EXPECT_EQ(names_of(m_client->events()), (std::vector<std::string>{"MIGRATION", "UNPLUG_PRIMARY"}));
    EXPECT_EQ(m_client->events()[1].data["device-id"], "hostdev0");
    const Json log = m_sut->actions();
    EXPECT_EQ(actions(), (std::vector<std::string>{"late-unplug:delayed", "late-unplug:released"}));
    EXPECT_GE(log[1]["host_ns"].get<std::int64_t>() - log[0]["host_ns"].get<std::int64_t>(), 1'000'000'000);
}

TEST_F(QmpInterposer_test, ForgedEventsFollowTheirTriggerOrComeAfterMs) {
    handshake().send(event("UNPLUG_PRIMARY", {{"device-id", "hostdev0"}})).send(event("RESUME"));
    m_peer.start();
    start({{"rules",
            {{{"name", "phantom-delete"},
              {"event", "UNPLUG_PRIMARY"},
              {"action", "forge"},
              {"forge", {{{"event", "DEVICE_DELETED"}, {"data", {{"device", "hostdev0"}}}}, {{"event", "STOP"}}}}},
             {{"name", "late-reset"}, {"event", "RESUME"}, {"action", "forge"}, {"after_ms", 300},
              {"drop_trigger", true}, {"forge", {{{"event", "RESET"}, {"data", {{"guest", true}}}}}}}}}});
    connect();
    wait_event("RESET");

    EXPECT_EQ(names_of(m_client->events()),
              (std::vector<std::string>{"UNPLUG_PRIMARY", "DEVICE_DELETED", "STOP", "RESET"}));
    const QmpEvent& forged = m_client->events()[1];
    EXPECT_EQ(forged.data, Json({{"device", "hostdev0"}}));
    const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    EXPECT_NEAR(forged.qemu_timestamp, now, 60.0);  // the real time, not the trigger's
    EXPECT_TRUE(m_client->events()[2].data.is_null());
    EXPECT_EQ(actions(), (std::vector<std::string>{"phantom-delete:forged", "phantom-delete:forged",
                                                   "late-reset:dropped", "late-reset:forged"}));
    const Json log = m_sut->actions();
    EXPECT_GE(log[3]["host_ns"].get<std::int64_t>() - log[2]["host_ns"].get<std::int64_t>(), 300'000'000);
}

TEST_F(QmpInterposer_test, OnConnectForgesRightAfterTheCapabilitiesReply) {
    m_peer.send(greeting).expect({{"execute", "qmp_capabilities"}}).send(reply(7));
    m_peer.start();
    start({{"rules", {{{"name", "stray"}, {"on_connect", true}, {"action", "forge"},
                       {"forge", {{{"event", "NIC_RX_FILTER_CHANGED"}, {"data", {{"name", "net0"}}}}}}}}}});
    RawClient client(listen_path());
    ASSERT_FALSE(client.read_lines(1).empty());
    client.send("{\"execute\": \"qmp_capabilities\", \"id\": 7}\n");
    const std::string lines = client.read_lines(2);
    const std::size_t first_end = lines.find('\n');
    ASSERT_NE(first_end, std::string::npos) << lines;
    EXPECT_EQ(Json::parse(lines.substr(0, first_end)), reply(7));
    const Json forged = Json::parse(lines.substr(first_end + 1));
    EXPECT_EQ(forged["event"], "NIC_RX_FILTER_CHANGED");
    EXPECT_EQ(forged["data"], Json({{"name", "net0"}}));
    EXPECT_TRUE(forged["timestamp"]["seconds"].is_number_integer());
    EXPECT_TRUE(forged["timestamp"]["microseconds"].is_number_integer());
    EXPECT_EQ(actions(), (std::vector<std::string>{"stray:forged"}));
}

TEST_F(QmpInterposer_test, DropTriggerPutsTheForgedEventInItsPlace) {
    handshake().send(event("MIGRATION", {{"status", "completed"}})).send(event("RESUME"));
    m_peer.start();
    start({{"rules", {{{"name", "fails-instead"}, {"event", "MIGRATION"}, {"data", {{"status", "completed"}}},
                       {"action", "forge"}, {"drop_trigger", true},
                       {"forge", {{{"event", "MIGRATION"}, {"data", {{"status", "failed"}}}}}}}}}});
    connect();
    wait_event("RESUME");

    EXPECT_EQ(names_of(m_client->events()), (std::vector<std::string>{"MIGRATION", "RESUME"}));
    EXPECT_EQ(m_client->events()[0].data["status"], "failed");
    EXPECT_EQ(actions(), (std::vector<std::string>{"fails-instead:dropped", "fails-instead:forged"}));
}

TEST_F(QmpInterposer_test, EditReplySetsKeysAndRemovesMatchingElementsAtAnyDepth) {
    const Json pci = Json::parse(R"([{"bus": 0, "devices": [
        {"qdev_id": "net0", "slot": 1},
        {"qdev_id": "bridge0", "slot": 2, "pci_bridge": {"devices": [{"qdev_id": "hostdev0", "slot": 0},
                                                                     {"qdev_id": "net1", "slot": 1}]}},
        {"qdev_id": "hostdev0", "slot": 3}]}])");
    const Json expected_pci = Json::parse(R"([{"bus": 0, "devices": [
        {"qdev_id": "net0", "slot": 1},
        {"qdev_id": "bridge0", "slot": 2, "pci_bridge": {"devices": [{"qdev_id": "net1", "slot": 1}]}}]}])");
    const Json peripherals = Json::parse(R"([{"name": "net1", "type": "child<virtio-net-pci>"},
                                              {"name": "hostdev0", "type": "child<vfio-pci>"}])");
    handshake()
        .expect({{"execute", "query-status"}, {"id", 2}})
        .send(reply(2, {{"status", "running"}, {"running", true}}))
        .expect({{"execute", "query-pci"}, {"id", 3}})
        .send(reply(3, pci))
        .expect({{"execute", "qom-list"}, {"id", 4}})
        .send(reply(4, peripherals))
        .expect({{"execute", "qom-list"}, {"id", 5}})
        .send(reply(5, peripherals));
    m_peer.start();
    start({{"rules",
            {{{"name", "paused"}, {"command", "query-status"}, {"action", "edit-reply"},
              {"set", {{"status", "paused"}, {"running", false}}}},
             {{"name", "pci-gone"}, {"command", "query-pci"}, {"action", "edit-reply"},
              {"remove", {{"qdev_id", "hostdev0"}}}},
             {{"name", "qom-gone"}, {"command", "qom-list"}, {"arguments", {{"path", "/machine/peripheral"}}},
              {"action", "edit-reply"}, {"remove", {{"name", "hostdev0"}}}}}}});
    connect();

    EXPECT_EQ(m_client->execute("query-status", nullptr, Clock::now() + 10s).value(),
              Json({{"status", "paused"}, {"running", false}}));
    EXPECT_EQ(m_client->execute("query-pci", nullptr, Clock::now() + 10s).value(), expected_pci);
    EXPECT_EQ(m_client->execute("qom-list", {{"path", "/machine/peripheral"}}, Clock::now() + 10s).value(),
              Json::parse(R"([{"name": "net1", "type": "child<virtio-net-pci>"}])"));
    // Arguments outside the subset: the reply is QEMU's.
    EXPECT_EQ(m_client->execute("qom-list", {{"path", "/machine/peripheral-anon"}}, Clock::now() + 10s).value(),
              peripherals);
    const Json log = m_sut->actions();
    EXPECT_EQ(actions(), (std::vector<std::string>{"paused:edited-reply", "pci-gone:edited-reply",
                                                   "qom-gone:edited-reply"}));
    EXPECT_EQ(log[1]["message"]["return"], expected_pci);
    EXPECT_EQ(log[1]["original"]["return"], pci);
    EXPECT_EQ(log[1]["removed"], 2);
}

TEST_F(QmpInterposer_test, ReplyAnswersWithoutAskingQemu) {
    handshake().expect({{"execute", "query-status"}, {"id", 4}}).send(reply(4, {{"status", "running"}}));
    m_peer.start();
    start({{"rules", {{{"name", "unplug-ok"}, {"command", "device_del"}, {"arguments", {{"id", "hostdev0"}}},
                       {"action", "reply"}, {"return", Json::object()}},
                      {{"name", "done"}, {"command", "query-migrate"}, {"action", "reply"},
                       {"return", {{"status", "completed"}}}}}}});
    connect();

    EXPECT_EQ(m_client->execute("device_del", {{"id", "hostdev0"}}, Clock::now() + 10s).value(), Json::object());
    EXPECT_EQ(m_client->execute("query-migrate", nullptr, Clock::now() + 10s).value(),
              Json({{"status", "completed"}}));
    EXPECT_EQ(m_client->execute("query-status", nullptr, Clock::now() + 10s).value()["status"], "running");
    EXPECT_EQ(m_peer.finish(), std::vector<std::string>{});
    EXPECT_EQ(m_peer.received().size(), 2U);  // qmp_capabilities and query-status only
    const Json log = m_sut->actions();
    EXPECT_EQ(actions(), (std::vector<std::string>{"unplug-ok:replied", "done:replied"}));
    EXPECT_EQ(log[0]["message"], reply(2));
    EXPECT_EQ(log[0]["command"]["arguments"], Json({{"id", "hostdev0"}}));
}

// A command swallowed with the events a host would send after it: the forged
// events arm the rules that follow (a cancel QEMU never saw, as the harness sees it).
TEST_F(QmpInterposer_test, ReplyForgesEventsThatArmLaterRules) {
    handshake()
        .expect({{"execute", "query-migrate"}, {"id", 3}})
        .send(reply(3, {{"status", "active"}}))
        .send(event("MIGRATION", {{"status", "completed"}}))
        .send(event("RESUME"));
    m_peer.start();
    const Json cancelling{{"event", "MIGRATION"}, {"data", {{"status", "cancelling"}}}};
    start({{"rules",
            {{{"name", "cancel-swallowed"}, {"command", "migrate_cancel"}, {"action", "reply"},
              {"return", Json::object()},
              {"forge", {cancelling, {{"event", "MIGRATION"}, {"data", {{"status", "cancelled"}}}}}}},
             {{"name", "hidden-migration"}, {"event", "MIGRATION"}, {"action", "drop"}, {"armed_by", cancelling}},
             {{"name", "says-cancelled"}, {"command", "query-migrate"}, {"action", "edit-reply"},
              {"set", {{"status", "cancelled"}}}, {"armed_by", cancelling}}}}});
    connect();

    EXPECT_EQ(m_client->execute("migrate_cancel", nullptr, Clock::now() + 10s).value(), Json::object());
    EXPECT_EQ(m_client->execute("query-migrate", nullptr, Clock::now() + 10s).value(),
              Json({{"status", "cancelled"}}));
    wait_event("RESUME");
    std::vector<Json> statuses;
    for (const auto& event : m_client->events()) {
        if (event.name == "MIGRATION") {
            statuses.push_back(event.data["status"]);
        }
    }
    EXPECT_EQ(statuses, (std::vector<Json>{"cancelling", "cancelled"}));  // QEMU's "completed" is hidden
    EXPECT_EQ(m_peer.finish(), std::vector<std::string>{});
    EXPECT_EQ(actions(), (std::vector<std::string>{"cancel-swallowed:replied", "cancel-swallowed:forged",
                                                   "cancel-swallowed:forged", "says-cancelled:edited-reply",
                                                   "hidden-migration:dropped"}));
}

TEST_F(QmpInterposer_test, CountActsOnTheFirstMatchesOnly) {
    handshake()
        .send(event("STOP"))
        .send(event("STOP"))
        .send(event("STOP", {{"n", 3}}))
        .send(event("RESUME"));
    m_peer.start();
    start({{"rules", {{{"name", "two-stops-lost"}, {"event", "STOP"}, {"action", "drop"}, {"count", 2}}}}});
    connect();
    wait_event("RESUME");

    EXPECT_EQ(names_of(m_client->events()), (std::vector<std::string>{"STOP", "RESUME"}));
    EXPECT_EQ(m_client->events()[0].data["n"], 3);
    EXPECT_EQ(actions(), (std::vector<std::string>{"two-stops-lost:dropped", "two-stops-lost:dropped"}));
}

TEST_F(QmpInterposer_test, ArmedByAndDisarmedByBoundWhereARuleActs) {
    handshake()
        .send(event("STOP", {{"n", 1}}))
        .send(event("MIGRATION", {{"status", "setup"}}))
        .send(event("STOP", {{"n", 2}}))
        .send(event("MIGRATION", {{"status", "completed"}}))
        .send(event("STOP", {{"n", 3}}))
        .send(event("RESUME"));
    m_peer.start();
    // The arming event is dropped by a rule of its own: it still arms.
    start({{"rules",
            {{{"name", "no-setup"}, {"event", "MIGRATION"}, {"data", {{"status", "setup"}}}, {"action", "drop"}},
             {{"name", "stop-during-migration"}, {"event", "STOP"}, {"action", "drop"},
              {"armed_by", {{"event", "MIGRATION"}, {"data", {{"status", "setup"}}}}},
              {"disarmed_by", {{"event", "MIGRATION"}, {"data", {{"status", "completed"}}}}}}}}});
    connect();
    wait_event("RESUME");

    std::vector<Json> stops;
    for (const auto& event : m_client->events()) {
        if (event.name == "STOP") {
            stops.push_back(event.data["n"]);
        }
    }
    EXPECT_EQ(stops, (std::vector<Json>{1, 3}));
    EXPECT_EQ(actions(), (std::vector<std::string>{"no-setup:dropped", "stop-during-migration:dropped"}));
}

TEST_F(QmpInterposer_test, QemuSocketAppearingLaterIsWaitedFor) {
    handshake().expect({{"execute", "query-status"}}).send(reply(2, {{"status", "prelaunch"}}));
    start({{"rules", Json::array()}});  // before QEMU's socket exists
    m_peer.start(800ms);
    connect();
    EXPECT_EQ(m_client->execute("query-status", nullptr, Clock::now() + 10s).value()["status"], "prelaunch");
}

TEST_F(QmpInterposer_test, QemuSocketNeverAcceptingClosesTheClient) {
    m_peer.start();  // listening elsewhere: nobody is at absent.sock
    auto sut = QmpInterposer::start(listen_path(), m_peer.dir() + "/absent.sock", {{"rules", Json::array()}}, "",
                                    default_max_message_size, 300ms);
    ASSERT_TRUE(sut.has_value()) << sut.error().message();
    m_sut.emplace(std::move(*sut));
    RawClient client(listen_path());
    EXPECT_TRUE(client.hung_up(Clock::now() + 10s));
    const Json log = m_sut->actions();
    ASSERT_EQ(log.size(), 1U);
    EXPECT_EQ(log[0]["action"], "closed");
    EXPECT_NE(log[0]["reason"].get<std::string>().find("absent.sock"), std::string::npos) << log[0];
}

TEST_F(QmpInterposer_test, BadPlansAreRefusedNamingTheRuleAndTheField) {
    const std::vector<std::pair<Json, std::string>> cases = {
        {Json::array(), "expected {\"rules\": [...]}"},
        {{{"rules", Json::array()}, {"mode", 1}}, "unknown field \"mode\""},
        {{{"rules", {{{"event", "STOP"}, {"action", "drop"}}}}}, "rule 0: field \"name\": expected a non-empty"},
        {{{"rules", {{{"name", "a"}, {"event", "STOP"}, {"action", "drop"}},
                     {{"name", "b"}, {"event", "STOP"}, {"command", "stop"}, {"action", "drop"}}}}},
         "rule 1 (\"b\"): field \"command\": expected exactly one trigger"},
        {{{"rules", {{{"name", "a"}, {"action", "drop"}}}}}, "rule 0 (\"a\"): field \"event\": expected exactly one"},
        {{{"rules", {{{"name", "a"}, {"command", "stop"}, {"action", "drop"}}}}},
         "rule 0 (\"a\"): field \"action\": \"drop\" takes an \"event\" trigger, not command"},
        {{{"rules", {{{"name", "a"}, {"event", "STOP"}, {"action", "reply"}, {"return", 1}}}}},
         "field \"action\": \"reply\" takes a \"command\" trigger, not event"},
        {{{"rules", {{{"name", "a"}, {"event", "STOP"}, {"action", "delay"}}}}},
         "field \"ms\": expected a non-negative integer of milliseconds (missing)"},
        {{{"rules", {{{"name", "a"}, {"event", "STOP"}, {"action", "delay"}, {"ms", "1s"}}}}},
         "field \"ms\": expected a non-negative integer of milliseconds, got \"1s\""},
        {{{"rules", {{{"name", "a"}, {"event", "STOP"}, {"action", "drop"}, {"ms", 5}}}}},
         "field \"ms\": is only for action \"delay\", not \"drop\""},
        {{{"rules", {{{"name", "a"}, {"event", "STOP"}, {"action", "drop"}, {"colour", 5}}}}},
         "field \"colour\": unknown field"},
        {{{"rules", {{{"name", "a"}, {"event", "STOP"}, {"action", "explode"}}}}}, "field \"action\": expected one of"},
        {{{"rules", {{{"name", "a"}, {"event", "STOP"}, {"action", "forge"}, {"forge", {{{"data", {}}}}}}}}},
         "field \"forge[0]\": expected {\"event\": NAME"},
        {{{"rules", {{{"name", "a"}, {"on_connect", true}, {"action", "forge"}, {"drop_trigger", true},
                      {"forge", {{{"event", "STOP"}}}}}}}},
         "field \"drop_trigger\": only an \"event\" trigger can be dropped"},
        {{{"rules", {{{"name", "a"}, {"command", "qom-list"}, {"action", "edit-reply"}}}}},
         "field \"set\": edit-reply needs \"set\" or \"remove\""},
        {{{"rules", {{{"name", "a"}, {"command", "qom-list"}, {"data", Json::object()}, {"action", "edit-reply"},
                      {"set", Json::object()}}}}},
         "field \"data\": is only for \"event\" triggers"},
        {{{"rules", {{{"name", "a"}, {"event", "STOP"}, {"action", "drop"}, {"count", 0}}}}},
         "field \"count\": expected a positive integer, got 0"},
        {{{"rules", {{{"name", "a"}, {"event", "STOP"}, {"action", "drop"}, {"armed_by", {{"data", 1}}}}}}},
         "field \"armed_by\": expected {\"event\": NAME"},
        {{{"rules", {{{"name", "a"}, {"event", "STOP"}, {"action", "drop"}},
                     {{"name", "a"}, {"event", "RESUME"}, {"action", "drop"}}}}},
         "rule 1: field \"name\": \"a\" is already the name of rule 0"},
    };
    m_peer.start();  // (no client: nothing is started)
    for (const auto& [plan, expected] : cases) {
        auto sut = QmpInterposer::start(listen_path(), m_peer.socket_path(), plan, "");
        ASSERT_FALSE(sut.has_value()) << plan;
        EXPECT_EQ(sut.error().code, HostErrc::InvalidArgument) << plan;
        EXPECT_NE(sut.error().detail.find(expected), std::string::npos)
            << "plan " << plan << "\n  error: " << sut.error().detail << "\n  expected: " << expected;
        EXPECT_FALSE(std::filesystem::exists(listen_path())) << "a refused plan left a socket";
    }
}

TEST_F(QmpInterposer_test, OversizedLineFromQemuClosesBothSides) {
    handshake().send(event("GUEST_PANICKED", {{"info", std::string(2000, 'x')}}));
    m_peer.start();
    start({{"rules", Json::array()}}, 1024);
    connect();
    auto read = m_client->wait_event("GUEST_PANICKED", nullptr, 0, Clock::now() + 10s);
    ASSERT_FALSE(read.has_value());
    EXPECT_EQ(read.error().code, HostErrc::Closed) << read.error().message();
    const Json log = m_sut->actions();
    ASSERT_EQ(log.size(), 1U);
    EXPECT_EQ(log[0]["action"], "closed");
    EXPECT_NE(log[0]["reason"].get<std::string>().find("from QEMU (limit 1024)"), std::string::npos) << log[0];
}

TEST_F(QmpInterposer_test, EventNestedTooDeepPassesUnreadAndTheClientRefusesIt) {
    // 200 000 levels: copying the parsed line would overflow the stack.
    const std::string deep = "{\"event\":\"STOP\",\"data\":" + std::string(200'000, '[') +
                             std::string(200'000, ']') + "}";
    handshake().send_line(deep).send({{"event", "RESUME"}, {"timestamp", {{"seconds", 1}, {"microseconds", 0}}}});
    m_peer.stall().start();
    start({{"rules", {{{"name", "stop"}, {"event", "STOP"}, {"action", "drop"}}}}});
    connect();
    const auto refused = m_client->wait_event("RESUME", nullptr, 0, Clock::now() + 10s);
    ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error().code, HostErrc::Malformed);
    wait_event("RESUME");
    EXPECT_EQ(m_sut->actions(), Json::array());  // the rule did not see it as a STOP
}

TEST_F(QmpInterposer_test, NextClientGetsItsOwnQemuConnectionAndOnConnectAgain) {
    handshake()
        .expect({{"execute", "query-status"}, {"id", 2}})
        .send(reply(2, {{"status", "running"}}))
        .reaccept();
    handshake().expect({{"execute", "query-status"}, {"id", 2}}).send(reply(2, {{"status", "paused"}}));
    m_peer.start();
    start({{"rules",
            {{{"name", "hello"}, {"on_connect", true}, {"action", "forge"}, {"forge", {{{"event", "STOP"}}}}}}}});
    connect();
    EXPECT_EQ(m_client->execute("query-status", nullptr, Clock::now() + 10s).value()["status"], "running");
    wait_event("STOP");
    m_client.reset();

    connect();
    EXPECT_EQ(m_client->execute("query-status", nullptr, Clock::now() + 10s).value()["status"], "paused");
    wait_event("STOP");
    EXPECT_EQ(actions(), (std::vector<std::string>{"hello:forged", "hello:forged"}));
}

TEST_F(QmpInterposer_test, StopWithAClientAttachedClosesItAndRemovesTheSocket) {
    handshake().stall();
    m_peer.start();
    start({{"rules", Json::array()}});
    connect();

    const auto before = Clock::now();
    m_sut->stop();
    EXPECT_LT(Clock::now() - before, 2s);
    m_sut->stop();  // again: nothing happens
    auto read = m_client->wait_event("STOP", nullptr, 0, Clock::now() + 10s);
    ASSERT_FALSE(read.has_value());
    EXPECT_EQ(read.error().code, HostErrc::Closed) << read.error().message();
    EXPECT_FALSE(std::filesystem::exists(listen_path()));
}
