// Trace checker: malformed or self-contradicting traces are TraceErrc values whose
// message names the entry and the field, never violations.
#include <gtest/gtest.h>

#include <string>

#include "vnetct/reference_impl/trace_checker.hpp"

namespace vnetct::reference_impl {
namespace {

using nlohmann::json;

json minimal_trace(json entries) {
    return {{"role", "source"},
            {"unplug_timeout_ms", nullptr},
            {"devices", {{{"id", "net1"}, {"driver", "virtio-net-pci"}, {"failover", true},
                          {"bus", "root1"}, {"bus_kind", "RootPortHotplug"}}}},
            {"entries", std::move(entries)}};
}

class TraceCheckerSchema_test : public ::testing::Test {
  protected:
    void expect_error(const json& trace, TraceErrc code, const std::string& message) {
        const auto verdict = check_failover_trace(trace);
        ASSERT_FALSE(verdict.has_value()) << "accepted";
        EXPECT_EQ(verdict.error().code, code) << verdict.error().message();
        EXPECT_EQ(verdict.error().message(), message);
    }
};

TEST_F(TraceCheckerSchema_test, MinimalTraceParses) {
    const auto parsed = parse_failover_trace(
        minimal_trace({{{"t_ms", 0}, {"kind", "start"}}, {{"t_ms", 1.5}, {"kind", "pci"},
                                                           {"visible", {"net1"}}}}));
    ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
    EXPECT_EQ(parsed->devices.at(0).bus_kind, BusKind::RootPortHotplug);
    EXPECT_TRUE(parsed->devices.at(0).network_class);  // defaulted
    EXPECT_EQ(parsed->entries.at(1).kind, TraceEntryKind::Pci);
    EXPECT_EQ(parsed->entries.at(1).ids, std::vector<std::string>{"net1"});
    EXPECT_FALSE(parsed->unplug_timeout.has_value());
    EXPECT_FALSE(parsed->cancel_unplug_timeout.has_value());  // absent
}

TEST_F(TraceCheckerSchema_test, HostUnplugTimeouts) {
    json trace = minimal_trace(json::array());
    trace["unplug_timeout_ms"] = 5000;
    trace["cancel_unplug_timeout_ms"] = 30000.9;
    auto parsed = parse_failover_trace(trace);
    ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
    EXPECT_EQ(parsed->unplug_timeout, Milliseconds{5000});
    EXPECT_EQ(parsed->cancel_unplug_timeout, Milliseconds{30000});  // rounded down

    trace["cancel_unplug_timeout_ms"] = nullptr;
    parsed = parse_failover_trace(trace);
    ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
    EXPECT_FALSE(parsed->cancel_unplug_timeout.has_value());
}

TEST_F(TraceCheckerSchema_test, NegativeOrNonNumericTimeout) {
    json trace = minimal_trace(json::array());
    trace["cancel_unplug_timeout_ms"] = -1;
    expect_error(trace, TraceErrc::WrongType,
                 "a field has the wrong JSON type: cancel_unplug_timeout_ms: negative");
    trace["cancel_unplug_timeout_ms"] = "30s";
    expect_error(trace, TraceErrc::WrongType,
                 "a field has the wrong JSON type: cancel_unplug_timeout_ms: expected a finite "
                 "number, got string");
    trace = minimal_trace(json::array());
    trace["unplug_timeout_ms"] = -0.5;
    expect_error(trace, TraceErrc::WrongType,
                 "a field has the wrong JSON type: unplug_timeout_ms: negative");
}

TEST_F(TraceCheckerSchema_test, TimeoutOfMoreThanAYearIsRefusedNotOverflowed) {
    json trace = minimal_trace(json::array());
    trace["unplug_timeout_ms"] = 1e19;
    expect_error(trace, TraceErrc::WrongType,
                 "a field has the wrong JSON type: unplug_timeout_ms: larger than a year (31536000000 ms)");
    trace = minimal_trace(json::array());
    trace["cancel_unplug_timeout_ms"] = 31536000000.0;
    auto parsed = parse_failover_trace(trace);
    ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
    EXPECT_EQ(parsed->cancel_unplug_timeout, Milliseconds{31536000000LL});
}

TEST_F(TraceCheckerSchema_test, NotAnObject) {
    expect_error(json::array(), TraceErrc::WrongType,
                 "a field has the wrong JSON type: trace: expected an object, got array");
}

TEST_F(TraceCheckerSchema_test, MissingField) {
    expect_error(minimal_trace({{{"t_ms", 0}, {"kind", "start"}}, {{"kind", "migrate"}}}),
                 TraceErrc::MissingField, "a required field is missing: entries[1].t_ms: missing");
    expect_error(minimal_trace({{{"t_ms", 0}, {"kind", "guest-ack"}, {"standby_bit", true}}}),
                 TraceErrc::MissingField,
                 "a required field is missing: entries[0].standby: missing");
}

TEST_F(TraceCheckerSchema_test, WrongType) {
    expect_error(
        minimal_trace({{{"t_ms", 0}, {"kind", "guest-ack"}, {"standby", "net1"},
                        {"standby_bit", "yes"}}}),
        TraceErrc::WrongType,
        "a field has the wrong JSON type: entries[0].standby_bit: expected a boolean, got string");
    expect_error(minimal_trace({{{"t_ms", "0"}, {"kind", "start"}}}), TraceErrc::WrongType,
                 "a field has the wrong JSON type: entries[0].t_ms: expected a finite number, "
                 "got string");
    expect_error(minimal_trace({{{"t_ms", 0}, {"kind", "pci"}, {"visible", {"net1", 3}}}}),
                 TraceErrc::WrongType,
                 "a field has the wrong JSON type: entries[0].visible[1]: expected a string, got "
                 "number");
}

TEST_F(TraceCheckerSchema_test, UnknownKind) {
    const auto verdict = check_failover_trace(minimal_trace({{{"t_ms", 0}, {"kind", "reboot"}}}));
    ASSERT_FALSE(verdict.has_value());
    EXPECT_EQ(verdict.error().code, TraceErrc::UnknownKind);
    EXPECT_EQ(verdict.error().detail.rfind("entries[0].kind: 'reboot' (known: start, guest-ack, ", 0),
              0U)
        << verdict.error().detail;
}

TEST_F(TraceCheckerSchema_test, UnknownBusKindAndRole) {
    json trace = minimal_trace(json::array());
    trace["devices"][0]["bus_kind"] = "PciExpressSwitch";
    expect_error(trace, TraceErrc::UnknownBusKind,
                 "unknown bus_kind: devices[0].bus_kind: 'PciExpressSwitch' (known: "
                 "RootPortHotplug, RootBus, ConventionalPci)");
    trace = minimal_trace(json::array());
    trace["role"] = "both";
    expect_error(trace, TraceErrc::UnknownRole,
                 "unknown role (expected source or target): role: 'both'");
}

TEST_F(TraceCheckerSchema_test, DuplicateDevice) {
    json trace = minimal_trace(json::array());
    trace["devices"].push_back(trace["devices"][0]);
    expect_error(trace, TraceErrc::DuplicateDevice,
                 "two devices have the same id: devices[1].id: 'net1'");
}

TEST_F(TraceCheckerSchema_test, TimeGoingBackwards) {
    expect_error(minimal_trace({{{"t_ms", 5}, {"kind", "start"}}, {{"t_ms", 4.5}, {"kind", "pci"},
                                                                   {"visible", json::array()}}}),
                 TraceErrc::TimeWentBackwards,
                 "t_ms is earlier than the previous entry's: entries[1].t_ms: 4.500000 ms after "
                 "5.000000 ms");
}

TEST_F(TraceCheckerSchema_test, InputTheModelCannotApply) {
    expect_error(minimal_trace({{{"t_ms", 0}, {"kind", "start"}},
                                {{"t_ms", 1}, {"kind", "guest-ack"}, {"standby", "net7"},
                                 {"standby_bit", true}}}),
                 TraceErrc::InputRejected,
                 "the model cannot apply this input: the trace is inconsistent: entries[1] "
                 "(guest-ack): no device with this id: net7");
    expect_error(minimal_trace({{{"t_ms", 0}, {"kind", "migrate"}}}), TraceErrc::InputRejected,
                 "the model cannot apply this input: the trace is inconsistent: entries[0] "
                 "(migrate): the host has not been started");
}

TEST_F(TraceCheckerSchema_test, StartErrorNoRuleExplains) {
    expect_error(minimal_trace({{{"t_ms", 0}, {"kind", "start"}},
                                {{"t_ms", 1}, {"kind", "start-error"},
                                 {"text", "could not open /dev/net/tun"}}}),
                 TraceErrc::UnexplainedStartError,
                 "the host refused to start for a reason no rule explains: entries[1] "
                 "(start-error): 'could not open /dev/net/tun'");
}

}  // namespace
}  // namespace vnetct::reference_impl
