// Failover model: each deliberately broken behaviour (Mutation) changes the
// outputs of a scenario, and breaks the rule named in the test.
#include <functional>

#include "failover_model_test_support.hpp"

namespace vnetct::reference_impl {
namespace {

using namespace test_support;

struct Scenario {
    Role role;
    std::function<void(FailoverHost&)> steps;
};

void cold_plug_pair(FailoverHost& host) {
    ASSERT_TRUE(host.cold_plug(standby_spec("net1", "root1")).has_value());
    ASSERT_TRUE(host.cold_plug(primary_spec("hostdev0", "net1", "root2")).has_value());
    ASSERT_TRUE(host.start(Milliseconds{0}).has_value());
}

void negotiate_and_migrate(FailoverHost& host) {
    cold_plug_pair(host);
    ASSERT_TRUE(host.guest_ack_features("net1", true, Milliseconds{10}).has_value());
    ASSERT_TRUE(host.migrate(Milliseconds{100}).has_value());
}

// The scenario that exposes a mutation.
Scenario scenario_for(Mutation mutation) {
    switch (mutation) {
        case Mutation::LeaveWaitUnplugEarly:
        case Mutation::NoUnplugPrimaryEvent:
            return {Role::Source, negotiate_and_migrate};
        case Mutation::ForgetReplugAfterCancel:
            return {Role::Source, [](FailoverHost& host) {
                        negotiate_and_migrate(host);
                        ASSERT_TRUE(host.migrate_cancel(Milliseconds{150}).has_value());
                        ASSERT_TRUE(host.guest_released("hostdev0", Milliseconds{200}).has_value());
                    }};
        case Mutation::NegotiatedBeforeAck:
            return {Role::Source, cold_plug_pair};
        case Mutation::PlugPrimaryWithoutStandbyAck:
            return {Role::Source, [](FailoverHost& host) {
                        cold_plug_pair(host);
                        ASSERT_TRUE(host.guest_ack_features("net1", false, Milliseconds{10}));
                    }};
        case Mutation::NoReplugOnTarget:
            return {Role::Target, [](FailoverHost& host) {
                        cold_plug_pair(host);
                        ASSERT_TRUE(host.incoming(Milliseconds{10}).has_value());
                        const std::vector<std::string> negotiated{"net1"};
                        ASSERT_TRUE(host.incoming_loaded(negotiated, Milliseconds{900}));
                    }};
    }
    ADD_FAILURE() << "no scenario for " << to_string(mutation);
    return {Role::Source, [](FailoverHost&) {}};
}

class FailoverMutation_test : public FailoverModel_fixture {
  protected:
    // The scenario's outputs with these mutations, from a fresh m_sut.
    Lines run(Mutation mutation, Mutations mutations) {
        const Scenario scenario = scenario_for(mutation);
        m_sut = FailoverHost{scenario.role, ModelOptions{.unplug_timeout = std::nullopt,
                                                         .cancel_unplug_timeout = std::nullopt,
                                                         .mutations = mutations}};
        scenario.steps(m_sut);
        return outputs();
    }

    Lines correct(Mutation mutation) { return run(mutation, {}); }
    Lines mutated(Mutation mutation) { return run(mutation, {mutation}); }
};

TEST_F(FailoverMutation_test, EveryMutationChangesTheOutputsOfItsScenario) {
    for (const Mutation mutation : all_mutations()) {
        SCOPED_TRACE(std::string{to_string(mutation)});
        EXPECT_NE(correct(mutation), mutated(mutation));
    }
}

TEST_F(FailoverMutation_test, FO_MIG_SRC_03_LeaveWaitUnplugEarly) {
    EXPECT_EQ(mutated(Mutation::LeaveWaitUnplugEarly),
              (Lines{"FAILOVER_NEGOTIATED net1", "plugged hostdev0", "MIGRATION setup",
                     "UNPLUG_PRIMARY hostdev0", "MIGRATION wait-unplug", "MIGRATION active"}));
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::UnplugRequested);
}

TEST_F(FailoverMutation_test, FO_MIG_SRC_01_NoUnplugPrimaryEvent) {
    EXPECT_EQ(mutated(Mutation::NoUnplugPrimaryEvent),
              (Lines{"FAILOVER_NEGOTIATED net1", "plugged hostdev0", "MIGRATION setup",
                     "MIGRATION wait-unplug"}));
}

TEST_F(FailoverMutation_test, FO_MIG_SRC_04_ForgetReplugAfterCancel) {
    const Lines broken = mutated(Mutation::ForgetReplugAfterCancel);
    EXPECT_EQ(broken.back(), "MIGRATION cancelled");
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::Released);
    EXPECT_EQ(correct(Mutation::ForgetReplugAfterCancel).back(), "plugged hostdev0");
}

TEST_F(FailoverMutation_test, FO_NEG_01_NegotiatedBeforeAck) {
    EXPECT_EQ(correct(Mutation::NegotiatedBeforeAck), Lines{});
    EXPECT_EQ(mutated(Mutation::NegotiatedBeforeAck),
              (Lines{"FAILOVER_NEGOTIATED net1", "plugged hostdev0"}));
}

TEST_F(FailoverMutation_test, FO_NEG_03_PlugPrimaryWithoutStandbyAck) {
    EXPECT_EQ(correct(Mutation::PlugPrimaryWithoutStandbyAck), Lines{});
    EXPECT_EQ(mutated(Mutation::PlugPrimaryWithoutStandbyAck), Lines{"plugged hostdev0"});
}

TEST_F(FailoverMutation_test, FO_MIG_TGT_02_NoReplugOnTarget) {
    EXPECT_EQ(mutated(Mutation::NoReplugOnTarget),
              (Lines{"MIGRATION setup", "MIGRATION active", "FAILOVER_NEGOTIATED net1", "RESUME",
                     "MIGRATION completed"}));
    EXPECT_EQ(state_of("hostdev0"), PrimaryState::Hidden);
}

TEST_F(FailoverMutation_test, NoMutationsByDefault) {
    EXPECT_TRUE(ModelOptions{}.mutations.none());
    const Mutations two{Mutation::NoReplugOnTarget, Mutation::LeaveWaitUnplugEarly};
    EXPECT_TRUE(two.has(Mutation::NoReplugOnTarget));
    EXPECT_TRUE(two.has(Mutation::LeaveWaitUnplugEarly));
    EXPECT_FALSE(two.has(Mutation::NegotiatedBeforeAck));
    EXPECT_EQ(all_mutations().size(), kMutationCount);
}

}  // namespace
}  // namespace vnetct::reference_impl
