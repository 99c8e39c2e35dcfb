// Trace checker against the model's own mutations: a trace recorded from a mutated
// host (its events, warnings and a query-pci after every step) is conformant to
// that mutated model and, checked against the correct one, breaks the rule the
// mutation was made to break.
#include <gtest/gtest.h>

#include <chrono>
#include <ostream>
#include <string>
#include <vector>

#include "vnetct/reference_impl/trace_checker.hpp"

namespace vnetct::reference_impl {
namespace {

using nlohmann::json;

json device(std::string id, std::string pair, std::string bus) {
    const bool standby = pair.empty();
    return {{"id", std::move(id)}, {"driver", standby ? "virtio-net-pci" : "e1000e"},
            {"failover", standby}, {"failover_pair_id", std::move(pair)}, {"bus", std::move(bus)},
            {"bus_kind", "RootPortHotplug"}};
}

struct Scenario {
    std::string name;
    std::string role;
    std::vector<json> inputs;  // entries without t_ms
};

// Applies one input to the recording host (only the kinds the scenarios use).
ModelResult<void> apply(FailoverHost& host, const FailoverTrace& parsed, const json& input,
                        Milliseconds now) {
    const std::string kind = input.at("kind");
    if (kind == "start") {
        for (const DeviceSpec& spec : parsed.devices) {
            (void)host.cold_plug(spec);
        }
        return host.start(now);
    }
    if (kind == "guest-ack") {
        return host.guest_ack_features(input.at("standby").get<std::string>(),
                                       input.at("standby_bit").get<bool>(), now);
    }
    if (kind == "guest-released") {
        return host.guest_released(input.at("primary").get<std::string>(), now);
    }
    if (kind == "migrate") {
        return host.migrate(now);
    }
    if (kind == "migrate-cancel") {
        return host.migrate_cancel(now);
    }
    if (kind == "transfer-done") {
        return host.transfer_done(now);
    }
    if (kind == "incoming") {
        return host.incoming(now);
    }
    const auto standbys = input.at("standbys").get<std::vector<std::string>>();
    return host.incoming_loaded(standbys, now);
}

// What a host with these mutations shows for the scenario's inputs.
json record(const Scenario& scenario, const Mutations& mutations) {
    json trace = {{"role", scenario.role},
                  {"unplug_timeout_ms", nullptr},
                  {"devices", {device("net1", "", "root1"), device("hostdev0", "net1", "root2")}},
                  {"entries", json::array()}};
    const FailoverTrace parsed = parse_failover_trace(trace).value();
    FailoverHost host{parsed.role, ModelOptions{std::nullopt, std::nullopt, mutations}};
    double t_ms = 0;
    auto add = [&trace, &t_ms](json entry) {
        entry["t_ms"] = t_ms;
        t_ms += 10;
        trace["entries"].push_back(std::move(entry));
    };
    for (const json& input : scenario.inputs) {
        add(input);
        const auto applied = apply(host, parsed, input, Milliseconds{static_cast<long long>(t_ms)});
        EXPECT_TRUE(applied.has_value()) << scenario.name << ": " << input.dump();
        for (const Output& output : host.take_outputs()) {
            if (output.kind == OutputKind::QmpEvent) {
                add({{"kind", "qmp-event"}, {"name", output.name}, {"data", output.data}});
            } else if (output.kind == OutputKind::Warning) {
                add({{"kind", "stderr"}, {"text", "qemu-system-x86_64: warning: " + output.text}});
            } else if (output.kind == OutputKind::StartError) {
                add({{"kind", "start-error"}, {"text", output.text}});
            }
        }
        add({{"kind", "pci"}, {"visible", host.visible_devices()}});
    }
    return trace;
}

const json kStart = {{"kind", "start"}};
const json kAck = {{"kind", "guest-ack"}, {"standby", "net1"}, {"standby_bit", true}};
const json kReleased = {{"kind", "guest-released"}, {"primary", "hostdev0"}};

const std::vector<Scenario>& scenarios() {
    static const std::vector<Scenario> all{
        {"migration", "source",
         {kStart, kAck, {{"kind", "migrate"}}, kReleased, {{"kind", "transfer-done"}}}},
        {"cancel", "source",
         {kStart, kAck, {{"kind", "migrate"}}, {{"kind", "migrate-cancel"}}, kReleased}},
        {"no-ack", "source",
         {kStart, {{"kind", "guest-ack"}, {"standby", "net1"}, {"standby_bit", false}}}},
        {"target", "target",
         {kStart, {{"kind", "incoming"}}, {{"kind", "incoming-loaded"}, {"standbys", {"net1"}}}}},
    };
    return all;
}

struct Expectation {
    const char* name;  // the mutation's enumerator
    Mutation mutation;
    std::string scenario;
    std::string rule;
};

void PrintTo(const Expectation& expectation, std::ostream* out) {
    *out << expectation.name << " in " << expectation.scenario << ": " << expectation.rule;
}

class TraceCheckerEveryMutation_test : public ::testing::TestWithParam<Expectation> {};

TEST(TraceCheckerMutation_test, CorrectHostsTracesAreConformant) {
    for (const Scenario& scenario : scenarios()) {
        const auto verdict = check_failover_trace(record(scenario, {}));
        ASSERT_TRUE(verdict.has_value()) << scenario.name << ": " << verdict.error().message();
        EXPECT_TRUE(verdict->conformant) << scenario.name << ": " << verdict->violation->message();
    }
}

TEST_P(TraceCheckerEveryMutation_test, MutatedTraceBreaksTheRule) {
    const Expectation& expectation = GetParam();
    for (const Scenario& scenario : scenarios()) {
        SCOPED_TRACE(scenario.name);
        const json trace = record(scenario, Mutations{expectation.mutation});
        const auto own = check_failover_trace(trace, Mutations{expectation.mutation});
        ASSERT_TRUE(own.has_value()) << own.error().message();
        EXPECT_TRUE(own->conformant) << own->violation->message();
        if (scenario.name != expectation.scenario) {
            continue;
        }
        const auto correct = check_failover_trace(trace);
        ASSERT_TRUE(correct.has_value()) << correct.error().message();
        ASSERT_FALSE(correct->conformant) << trace.dump(1);
        EXPECT_EQ(correct->violation->rule, expectation.rule) << correct->violation->message();
    }
}

INSTANTIATE_TEST_SUITE_P(
    EveryMutation, TraceCheckerEveryMutation_test,
    ::testing::Values(Expectation{"LeaveWaitUnplugEarly", Mutation::LeaveWaitUnplugEarly, "migration", "FO-MIG-SRC-03"},
                      Expectation{"ForgetReplugAfterCancel", Mutation::ForgetReplugAfterCancel, "cancel", "FO-MIG-SRC-04"},
                      Expectation{"NegotiatedBeforeAck", Mutation::NegotiatedBeforeAck, "migration", "FO-NEG-01"},
                      Expectation{"NoUnplugPrimaryEvent", Mutation::NoUnplugPrimaryEvent, "migration", "FO-MIG-SRC-01"},
                      Expectation{"PlugPrimaryWithoutStandbyAck", Mutation::PlugPrimaryWithoutStandbyAck, "no-ack", "FO-NEG-03"},
                      Expectation{"NoReplugOnTarget", Mutation::NoReplugOnTarget, "target", "FO-MIG-TGT-02"}),
    [](const ::testing::TestParamInfo<Expectation>& info) { return std::string{info.param.name}; });

TEST(TraceCheckerMutation_test, EveryMutationIsExercised) {
    EXPECT_EQ(kMutationCount, 6U) << "add the new mutation to EveryMutation";
}

}  // namespace
}  // namespace vnetct::reference_impl
