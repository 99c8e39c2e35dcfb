#include "vnetct/guest_agent/requests.hpp"

#include <gtest/gtest.h>

namespace vnetct::guest_agent {
namespace {

using nlohmann::json;

class FakeServices final : public AgentServices {
public:
    GuestResult<json> report() override { return json{{"netdevs", json::array()}}; }
    GuestResult<std::vector<std::string>> kernel_log() override {
        return std::vector<std::string>{"failover master:eth0 registered"};
    }
    GuestResult<std::vector<ModuleLoadOutcome>> load_modules(const std::vector<std::string>& names) override {
        loaded_modules = names;
        if (!module_failure.empty()) {
            return fail(GuestErrc::ModuleLoadFailed, module_failure);
        }
        std::vector<ModuleLoadOutcome> outcomes;
        for (const auto& name : names) {
            outcomes.push_back({name, name == "failover" ? ModuleStatus::AlreadyLoaded : ModuleStatus::Loaded, 1.5});
        }
        return outcomes;
    }
    GuestResult<void> configure_ipv4(const std::string& ifname, const Ipv4Prefix& prefix) override {
        if (ifname != "eth0") {
            return fail(GuestErrc::UnknownInterface, ifname);
        }
        configured_prefix_length = prefix.prefix_length;
        return {};
    }
    GuestResult<std::uint16_t> start_udp_echo(std::uint16_t port) override {
        echo_port = port;
        return port;
    }
    std::int64_t monotonic_ns() override { return 42; }
    std::int64_t realtime_ns() override { return realtime; }
    std::string kernel_release() override { return "6.12.0-test"; }
    GuestResult<void> set_realtime_ns(std::int64_t ns) override {
        if (clock_refused) {
            return fail(GuestErrc::SystemCallFailed, "clock_settime(CLOCK_REALTIME): Operation not permitted");
        }
        realtime = ns;
        return {};
    }

    std::vector<std::string> loaded_modules;
    std::string module_failure;
    int configured_prefix_length = -1;
    int echo_port = 0;
    std::int64_t realtime = 1000;
    bool clock_refused = false;
};

class RequestDispatch_test : public ::testing::Test {
protected:
    json dispatch(std::string_view line) {
        const auto replies = dispatch_request(line, m_services);
        EXPECT_EQ(replies.size(), 1U);
        if (replies.empty()) {
            return json{};
        }
        EXPECT_EQ(replies[0].back(), '\n');
        EXPECT_EQ(replies[0].find('\n'), replies[0].size() - 1) << "one reply, one line";
        return json::parse(replies[0]);
    }

    void expect_error(std::string_view line, const json& id, std::string_view fragment) {
        const json reply = dispatch(line);
        EXPECT_EQ(reply.at("id"), id) << line;
        EXPECT_EQ(reply.at("ok"), false) << line;
        const std::string error = reply.at("error");
        EXPECT_NE(error.find(fragment), std::string::npos) << "error \"" << error << "\" lacks \"" << fragment << "\"";
    }

    FakeServices m_services;
};

TEST_F(RequestDispatch_test, PingRepliesWithEmptyResultAndGuestTime) {
    const json reply = dispatch(R"({"id":1,"cmd":"ping"})");
    EXPECT_EQ(reply, json::parse(R"({"id":1,"ok":true,"result":{},"t_guest_ns":42})"));
}

TEST_F(RequestDispatch_test, ReportAndKernelLog) {
    EXPECT_EQ(dispatch(R"({"id":2,"cmd":"report"})").at("result"), json::parse(R"({"netdevs":[]})"));
    EXPECT_EQ(dispatch(R"({"id":3,"cmd":"kernel-log"})").at("result").at("lines"),
              (std::vector<std::string>{"failover master:eth0 registered"}));
}

TEST_F(RequestDispatch_test, LoadModulesInOrder) {
    const json reply = dispatch(R"({"id":4,"cmd":"load-modules","names":["failover","net_failover"]})");
    EXPECT_EQ(m_services.loaded_modules, (std::vector<std::string>{"failover", "net_failover"}));
    EXPECT_EQ(reply.at("result"), json::parse(R"({"modules":[{"name":"failover","status":"already-loaded","ms":1.5},
                                                            {"name":"net_failover","status":"loaded","ms":1.5}]})"));
}

TEST_F(RequestDispatch_test, LoadModulesFailureIsAnErrorReply) {
    m_services.module_failure = "module virtio_net (/lib/modules/vnetct/virtio_net.ko): No such file or directory";
    expect_error(R"({"id":5,"cmd":"load-modules","names":["virtio_net"]})", 5, "virtio_net.ko");
}

TEST_F(RequestDispatch_test, IpConfigAndUnknownInterface) {
    const json reply = dispatch(R"({"id":6,"cmd":"ip-config","ifname":"eth0","address":"198.18.0.2/24"})");
    EXPECT_EQ(reply.at("ok"), true);
    EXPECT_EQ(m_services.configured_prefix_length, 24);
    expect_error(R"({"id":7,"cmd":"ip-config","ifname":"eth9","address":"198.18.0.2/24"})", 7,
                 "no such network interface: eth9");
}

TEST_F(RequestDispatch_test, UdpEcho) {
    EXPECT_EQ(dispatch(R"({"id":8,"cmd":"udp-echo","port":7777})").at("result"), json::parse(R"({"port":7777})"));
    EXPECT_EQ(m_services.echo_port, 7777);
}

TEST_F(RequestDispatch_test, GarbageIsAnErrorWithNullId) {
    expect_error("hello there", nullptr, "not valid JSON");
    expect_error(R"({"id":1,"cmd":"ping")", nullptr, "not valid JSON");
    expect_error("[1,2]", nullptr, "expected a JSON object");
    expect_error("\"\xff\"", nullptr, "not valid JSON");
}

TEST_F(RequestDispatch_test, MissingOrBadId) {
    expect_error(R"({"cmd":"ping"})", nullptr, "missing integer \"id\"");
    expect_error(R"({"id":"1","cmd":"ping"})", nullptr, "\"id\" must be an integer");
    expect_error(R"({"id":1.5,"cmd":"ping"})", nullptr, "\"id\" must be an integer");
}

TEST_F(RequestDispatch_test, MissingOrUnknownCommandKeepsTheId) {
    expect_error(R"({"id":9})", 9, "missing string \"cmd\"");
    expect_error(R"({"id":10,"cmd":7})", 10, "missing string \"cmd\"");
    expect_error(R"({"id":11,"cmd":"reboot"})", 11, "unknown command: \"reboot\"");
}

TEST_F(RequestDispatch_test, WrongArgumentTypes) {
    expect_error(R"({"id":12,"cmd":"load-modules","names":"virtio_net"})", 12, "\"names\" must be an array");
    expect_error(R"({"id":13,"cmd":"load-modules","names":["a",1]})", 13, "holds a number");
    expect_error(R"({"id":14,"cmd":"ip-config","ifname":0,"address":"198.18.0.2/24"})", 14,
                 "\"ifname\" must be a string");
    expect_error(R"({"id":15,"cmd":"ip-config","ifname":"eth0"})", 15, "missing string \"address\"");
    expect_error(R"({"id":16,"cmd":"ip-config","ifname":"eth0","address":"198.18.0.2"})", 16, "no /prefix-length");
    expect_error(R"({"id":17,"cmd":"udp-echo","port":"7777"})", 17, "\"port\" must be an integer");
    expect_error(R"({"id":18,"cmd":"udp-echo","port":70000})", 18, "not 1-65535");
    expect_error(R"({"id":19,"cmd":"udp-echo"})", 19, "\"port\" must be an integer");
    EXPECT_TRUE(m_services.loaded_modules.empty()) << "bad arguments never reach the services";
}

TEST_F(RequestDispatch_test, OversizedLineIsRejected) {
    const std::string line = R"({"id":20,"cmd":"ping","pad":")" + std::string(kMaxLineBytes, 'x') + "\"}";
    expect_error(line, nullptr, "exceeds 1 MiB");
    const json reply = json::parse(oversized_line_reply(5'000'000));
    EXPECT_NE(reply.at("error").get<std::string>().find("5000000 bytes"), std::string::npos);
}

TEST_F(RequestDispatch_test, HelloEvent) {
    EXPECT_EQ(hello_event("6.12.9-amd64", 1, 2),
              json::parse(R"({"event":"hello","version":1,"kernel":"6.12.9-amd64","t_guest_ns":1,
                              "t_guest_realtime_ns":2})"));
}


TEST_F(RequestDispatch_test, HelloRequestRepliesWithTheHelloAndCanSetTheClock) {
    json reply = dispatch(R"({"id":30,"cmd":"hello"})");
    EXPECT_TRUE(reply.at("ok").get<bool>());
    EXPECT_EQ(reply.at("result"), json::parse(R"({"version":1,"kernel":"6.12.0-test","t_guest_ns":42,
                                                  "t_guest_realtime_ns":1000})"));
    reply = dispatch(R"({"id":31,"cmd":"hello","set_realtime_ns":1764770000000000000})");
    EXPECT_EQ(reply.at("result").at("t_guest_realtime_ns").get<std::int64_t>(), 1764770000000000000);
    EXPECT_EQ(m_services.realtime, 1764770000000000000);
}

TEST_F(RequestDispatch_test, HelloRefusesABadClockAndReportsAFailedSet) {
    expect_error(R"({"id":32,"cmd":"hello","set_realtime_ns":"now"})", 32, "must be a positive integer, not string");
    expect_error(R"({"id":33,"cmd":"hello","set_realtime_ns":-5})", 33, "must be a positive integer, not -5");
    EXPECT_EQ(m_services.realtime, 1000) << "a refused argument never reaches the clock";
    m_services.clock_refused = true;
    expect_error(R"({"id":34,"cmd":"hello","set_realtime_ns":5})", 34, "Operation not permitted");
}

}  // namespace
}  // namespace vnetct::guest_agent
