// The daemon's requests over a socketpair: hello, bad input, processes, files,
// the SR-IOV requests on a fake sysfs.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "../../sriov/test/fake_sysfs.hpp"
#include "peer.hpp"
#include "vnetct/remote/base64.hpp"

using namespace vnetct::remote;
using test_support::AgentUnderTest;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string error_code(const json& reply) { return reply.value("/error/code"_json_pointer, std::string("(none)")); }
std::string error_message(const json& reply) {
    return reply.value("/error/message"_json_pointer, std::string("(none)"));
}

class RemoteAgent_test : public ::testing::Test {
  protected:
    RemoteAgent_test() : m_dir(fs::temp_directory_path() / ("remote_test." + std::to_string(::getpid()))) {
        fs::create_directories(m_dir);
    }
    ~RemoteAgent_test() override { fs::remove_all(m_dir); }
    fs::path m_dir;
};

}  // namespace

TEST_F(RemoteAgent_test, GreetsWithHelloAndAnswersIt) {
    vnetct::sriov::test_support::FakeSysfs fake;
    fake.add_pf("eth7", "0000:3b:00.0", 7, 0);
    fake.add_virtual_netdev("br0");
    RemoteOptions options;
    options.sysfs_root = fake.root();
    AgentUnderTest m_sut(options);
    const json greeting = m_sut.next();
    EXPECT_EQ(greeting["event"], "hello");
    const json hello = m_sut.request("hello");
    EXPECT_EQ(hello["ok"], true);
    EXPECT_EQ(hello["protocol"], kProtocolVersion);
    EXPECT_EQ(hello["agent"], "vnetct-host-agent");
    EXPECT_FALSE(hello["kernel"].get<std::string>().empty());
    EXPECT_EQ(hello["pfs"], json::parse(R"([{"netdev":"eth7","address":"0000:3b:00.0","total_vfs":7,"num_vfs":0,
                                            "driver":"ice"}])"));
}

TEST_F(RemoteAgent_test, BadLinesGetAnErrorNamingWhatWasWrongAndTheAgentReadsOn) {
    RemoteOptions options;
    options.max_line_bytes = 1024;
    AgentUnderTest m_sut(options);
    m_sut.next();  // hello
    m_sut.send_raw("this is not json\n");
    json reply = m_sut.next();
    EXPECT_EQ(reply["id"], nullptr);
    EXPECT_EQ(error_code(reply), "Malformed");
    EXPECT_NE(error_message(reply).find("this is not json"), std::string::npos) << reply;

    m_sut.send_raw("{\"id\": 1, \"op\": \"hello\", \"pad\": \"" + std::string(5000, 'x') + "\"}\n");
    reply = m_sut.next();
    EXPECT_EQ(error_code(reply), "Oversized");
    EXPECT_NE(error_message(reply).find("limit 1024"), std::string::npos) << reply;

    m_sut.send_raw("[1, 2]\n");
    EXPECT_NE(error_message(m_sut.next()).find("not a JSON object"), std::string::npos);
    m_sut.send_raw("{\"op\": \"hello\"}\n");
    EXPECT_NE(error_message(m_sut.next()).find("\"id\""), std::string::npos);
    EXPECT_EQ(error_code(m_sut.request("reboot")), "UnknownRequest");
    reply = m_sut.request("spawn", {{"argv", "sh"}});
    EXPECT_EQ(error_code(reply), "BadRequest");
    EXPECT_NE(error_message(reply).find("spawn: \"argv\""), std::string::npos) << reply;
    reply = m_sut.request("read_file", {{"path", std::string("a\0b", 3)}});
    EXPECT_NE(error_message(reply).find("NUL"), std::string::npos) << reply;
    reply = m_sut.request("wait", {{"process", 1}, {"timeout_s", -1}});
    EXPECT_NE(error_message(reply).find("timeout_s"), std::string::npos) << reply;
    EXPECT_EQ(m_sut.request("hello")["ok"], true) << "still answering";
}

TEST_F(RemoteAgent_test, SpawnedOutputStreamsBackAndTheExitIsReported) {
    AgentUnderTest m_sut;
    m_sut.next();
    const json spawned = m_sut.request("spawn", {{"argv", {"sh", "-c", "echo out; echo err >&2; exit 3"}},
                                                 {"stdout", {{"stream", true}}},
                                                 {"stderr", {{"stream", true}}}});
    ASSERT_EQ(spawned["ok"], true) << spawned;
    const int out_ch = spawned["stdout_ch"];
    const int err_ch = spawned["stderr_ch"];
    const auto data_of = [&](int ch) {
        const json frame = m_sut.find([ch](const json& m) { return m.value("ch", -1) == ch && m.contains("data"); },
                                      "data on channel " + std::to_string(ch));
        return base64_decode(frame.value("data", "")).value_or("(bad base64)");
    };
    EXPECT_EQ(data_of(out_ch), "out\n");
    EXPECT_EQ(data_of(err_ch), "err\n");
    const json exited = m_sut.find([](const json& m) { return m.value("event", "") == "exited"; }, "exited");
    EXPECT_EQ(exited["process"], spawned["process"]);
    EXPECT_EQ(exited["code"], 3);
    const json closed = m_sut.find([&](const json& m) { return m.value("event", "") == "closed" && m["ch"] == out_ch; },
                                   "stdout closed");
    EXPECT_EQ(closed["reason"], "end of output");
    const json waited = m_sut.request("wait", {{"process", spawned["process"]}, {"timeout_s", 1}});
    EXPECT_EQ(waited["code"], 3) << "an ended process is answered at once";
}

TEST_F(RemoteAgent_test, AProcessIsSignalledWaitedForAndATimedOutWaitSaysSo) {
    AgentUnderTest m_sut;
    m_sut.next();
    const fs::path log = m_dir / "sleep.out";
    const json spawned = m_sut.request("spawn", {{"argv", {"sh", "-c", "echo started; exec sleep 100"}},
                                                 {"stdout", {{"file", log.string()}}},
                                                 {"env", {{"VNETCT_TEST", "1"}}}});
    ASSERT_EQ(spawned["ok"], true) << spawned;
    const json timed_out = m_sut.request("wait", {{"process", spawned["process"]}, {"timeout_s", 0.2}});
    EXPECT_EQ(error_code(timed_out), "Timeout");
    EXPECT_NE(error_message(timed_out).find("still running after 0.2"), std::string::npos) << timed_out;
    const int id = 77;
    m_sut.send({{"id", id}, {"op", "wait"}, {"process", spawned["process"]}, {"timeout_s", 30}});
    EXPECT_EQ(m_sut.request("signal", {{"process", spawned["process"]}, {"signal", "KILL"}})["signal"], 9);
    const json waited = m_sut.reply(id);
    EXPECT_EQ(waited["signal"], 9) << waited;
    EXPECT_EQ(waited["describe"], "killed by signal 9 (Killed)");
    EXPECT_EQ(error_code(m_sut.request("signal", {{"process", spawned["process"]}, {"signal", "TERM"}})),
              "InvalidArgument") << "an ended process is not signalled";
    EXPECT_EQ(error_code(m_sut.request("signal", {{"process", 999}, {"signal", "TERM"}})), "NoSuchProcess");
    std::ifstream in(log);
    std::string first;
    std::getline(in, first);
    EXPECT_EQ(first, "started");
}

TEST_F(RemoteAgent_test, FilesAreWrittenAndReadBackByteForByte) {
    RemoteOptions options;
    options.max_file_chunk = 4096;
    AgentUnderTest m_sut(options);
    m_sut.next();
    std::string bytes;
    for (int i = 0; i < 1000; ++i) {
        bytes += static_cast<char>((i * 7) & 0xff);
    }
    const std::string path = (m_dir / "blob").string();
    EXPECT_EQ(m_sut.request("write_file", {{"path", path}, {"data", base64_encode(bytes)}, {"mode", 0600}})["bytes"],
              1000);
    EXPECT_EQ(m_sut.request("write_file", {{"path", path}, {"data", base64_encode("tail")}, {"append", true}})["ok"],
              true);
    EXPECT_EQ(fs::status(path).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
    json read = m_sut.request("read_file", {{"path", path}});
    EXPECT_EQ(base64_decode(read["data"].get<std::string>()), bytes + "tail");
    EXPECT_EQ(read["size"], 1004);
    EXPECT_EQ(read["eof"], true);
    read = m_sut.request("read_file", {{"path", path}, {"offset", 998}, {"length", 4}});
    EXPECT_EQ(base64_decode(read["data"].get<std::string>()), bytes.substr(998) + "ta");
    EXPECT_EQ(read["eof"], false);

    EXPECT_EQ(error_code(m_sut.request("read_file", {{"path", path}, {"length", 4097}})), "BadRequest");
    EXPECT_EQ(error_code(m_sut.request("write_file", {{"path", path}, {"data", base64_encode(std::string(5000, 'x'))}})),
              "BadRequest") << "more than one chunk";
    EXPECT_EQ(error_code(m_sut.request("write_file", {{"path", path}, {"data", "no base64!"}})), "BadData");
    const json missing = m_sut.request("read_file", {{"path", (m_dir / "absent").string()}});
    EXPECT_EQ(error_code(missing), "FileFailed");
    EXPECT_NE(error_message(missing).find("No such file"), std::string::npos) << missing;
}

TEST_F(RemoteAgent_test, SriovRequestsRunTheSriovLibrary) {
    vnetct::sriov::test_support::FakeSysfs fake;
    fake.add_pf("eth7", "0000:3b:00.0", 4, 2);
    RemoteOptions options;
    options.sysfs_root = fake.root();
    AgentUnderTest m_sut(options);
    m_sut.next();
    const json probe = m_sut.request("sriov_probe", {{"pf", "eth7"}});
    EXPECT_EQ(probe["address"], "0000:3b:00.0");
    EXPECT_EQ(probe["total_vfs"], 4);
    EXPECT_EQ(error_code(m_sut.request("sriov_probe", {{"pf", "eth9"}})), "NoSuchPf");
    const std::string journal = (m_dir / "journal.json").string();
    // the count is already 2 and nothing else is asked: nothing written, the VF's address answered
    const json prepared = m_sut.request("sriov_prepare", {{"journal", journal},
        {"request", {{"pf", "eth7"}, {"num_vfs", 2}, {"bind_vfio", false}, {"vfs", {{{"index", 1}}}}}}});
    ASSERT_EQ(prepared["ok"], true) << prepared;
    EXPECT_EQ(prepared["vfs"][0]["address"], vnetct::sriov::test_support::FakeSysfs::vf_address(1));
    const json refused = m_sut.request("sriov_prepare", {{"journal", journal},
        {"request", {{"pf", "eth7"}, {"num_vfs", "two"}, {"bind_vfio", false}, {"vfs", json::array()}}}});
    EXPECT_EQ(error_code(refused), "InvalidArgument");
    EXPECT_NE(error_message(refused).find("request.num_vfs"), std::string::npos) << refused;
    const json restored = m_sut.request("sriov_restore", {{"journal", journal}});
    EXPECT_EQ(restored["left"], 0);
    EXPECT_EQ(restored["undone"], json::array());
}

TEST_F(RemoteAgent_test, TheEndOfInputEndsTheAgentAndItsChildren) {
    AgentUnderTest m_sut;
    m_sut.next();
    const json spawned = m_sut.request("spawn", {{"argv", {"sleep", "100"}}});
    const pid_t pid = spawned["pid"];
    m_sut.hang_up();
    EXPECT_EQ(m_sut.join(), 0);
    EXPECT_NE(::kill(pid, 0), 0) << "the child outlived the agent";
}
