// Trace checker: traces of what QEMU 10 does (observed on QEMU 10.0.2 with the harness) are conformant; traces of
// a broken host name the rule they break and the entry where it broke.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "vnetct/reference_impl/rules.hpp"
#include "vnetct/reference_impl/trace_checker.hpp"

namespace vnetct::reference_impl {
namespace {

using nlohmann::json;

json standby(std::string id = "net1", bool failover = true) {
    return {{"id", std::move(id)}, {"driver", "virtio-net-pci"}, {"failover", failover},
            {"failover_pair_id", ""}, {"bus", "root1"}, {"bus_kind", "RootPortHotplug"},
            {"multifunction", false}, {"network_class", true}};
}

json primary(std::string id = "hostdev0", std::string pair = "net1", std::string driver = "e1000e") {
    return {{"id", std::move(id)}, {"driver", std::move(driver)}, {"failover", false},
            {"failover_pair_id", std::move(pair)}, {"bus", "root2"},
            {"bus_kind", "RootPortHotplug"}, {"multifunction", false}, {"network_class", true}};
}

// A trace written one step per line; every entry is 10 ms after the previous one.
class Trace {
  public:
    explicit Trace(std::vector<json> devices, std::string role = "source") {
        m_trace = {{"role", std::move(role)}, {"unplug_timeout_ms", nullptr},
                   {"devices", std::move(devices)}, {"entries", json::array()}};
    }
    Trace& unplug_timeout(double ms) {
        m_trace["unplug_timeout_ms"] = ms;
        return *this;
    }
    Trace& cancel_unplug_timeout(json ms) {
        m_trace["cancel_unplug_timeout_ms"] = std::move(ms);
        return *this;
    }
    Trace& at(double t_ms) {
        m_t = t_ms;
        return *this;
    }
    Trace& input(const std::string& kind, json fields = json::object()) {
        fields["kind"] = kind;
        fields["t_ms"] = m_t;
        m_t += 10;
        m_trace["entries"].push_back(std::move(fields));
        return *this;
    }
    Trace& event(const std::string& name, json data = json::object()) {
        return input("qmp-event", {{"name", name}, {"data", std::move(data)}});
    }
    Trace& migration(const std::string& status) { return event("MIGRATION", {{"status", status}}); }
    Trace& pci(std::vector<std::string> visible) { return input("pci", {{"visible", visible}}); }
    Trace& stderr_line(const std::string& text) { return input("stderr", {{"text", text}}); }
    Trace& ack(const std::string& standby = "net1", bool bit = true) {
        return input("guest-ack", {{"standby", standby}, {"standby_bit", bit}});
    }
    Trace& released(const std::string& primary = "hostdev0") {
        return input("guest-released", {{"primary", primary}});
    }

    // start, then the negotiation of net1/hostdev0 as QEMU 10 shows it.
    Trace& negotiated() {
        return input("start").pci({"root1", "root2", "net1"}).ack().event(
            "FAILOVER_NEGOTIATED", {{"device-id", "net1"}}).pci({"net1", "hostdev0"});
    }
    // migrate up to wait-unplug, as QEMU 10's source shows it.
    Trace& waiting_for_unplug() {
        return input("migrate").migration("setup").event("UNPLUG_PRIMARY", {{"device-id", "hostdev0"}})
            .migration("wait-unplug");
    }

    // Index of the last entry written.
    [[nodiscard]] std::size_t last() const { return m_trace["entries"].size() - 1; }
    [[nodiscard]] const json& json_value() const { return m_trace; }

  private:
    json m_trace;
    double m_t = 0;
};

class TraceChecker_test : public ::testing::Test {
  protected:
    Verdict check(const Trace& trace, const Mutations& mutations = {}) {
        auto verdict = check_failover_trace(trace.json_value(), mutations);
        EXPECT_TRUE(verdict.has_value()) << verdict.error().message();
        return verdict.value_or(Verdict{});
    }

    void expect_conformant(const Trace& trace, const Mutations& mutations = {}) {
        const Verdict verdict = check(trace, mutations);
        EXPECT_TRUE(verdict.conformant) << verdict.violation->message();
        EXPECT_FALSE(verdict.violation.has_value());
    }

    Violation expect_violation(const Trace& trace, const std::string& rule, std::size_t index) {
        const Verdict verdict = check(trace);
        EXPECT_FALSE(verdict.conformant);
        if (!verdict.violation) {
            ADD_FAILURE() << "no violation; expected " << rule;
            return Violation{};
        }
        EXPECT_EQ(verdict.violation->rule, rule) << verdict.violation->message();
        EXPECT_EQ(verdict.violation->entry_index, index) << verdict.violation->message();
        EXPECT_EQ(verdict.violation->sentence, std::string{find_rule(rule)->sentence});
        return *verdict.violation;
    }
};

// --- conformant: what QEMU 10 was seen to do ----------------------------------

TEST_F(TraceChecker_test, FO_NEG_01_02_NegotiationPlugsThePrimary) {
    Trace trace{{standby(), primary()}};
    trace.input("start")
        .pci({"root1", "root2", "net1"})
        .event("NIC_RX_FILTER_CHANGED", {{"name", "net1"}})  // not judged
        .ack()
        .pci({"net1"})  // the plug is pending: either is fine
        .event("FAILOVER_NEGOTIATED", {{"device-id", "net1"}})
        .event("RESUME")  // not judged on the source
        .pci({"net1", "hostdev0"});
    expect_conformant(trace);
}

TEST_F(TraceChecker_test, FO_CFG_03_IgbIsRefusedAfterTheNegotiation) {
    json igb = primary("hostdev0", "net1", "igb");
    igb["multifunction"] = true;
    Trace trace{{standby(), igb}};
    trace.input("start")
        .pci({"net1"})
        .ack()
        .event("FAILOVER_NEGOTIATED", {{"device-id", "net1"}})
        .stderr_line("qemu-system-x86_64: warning: failover: primary device must be in its own "
                     "PCI slot")
        .pci({"net1"});
    expect_conformant(trace);
}

TEST_F(TraceChecker_test, FO_CFG_01_APrimaryWithoutIdIsRefusedAtStart) {
    Trace trace{{standby(), primary("")}};
    trace.input("start").input(
        "start-error", {{"text", "qemu-system-x86_64: -device e1000e,failover_pair_id=net1: "
                                 "Device with failover_pair_id needs to have id"}});
    expect_conformant(trace);
}

json root_bus_primary() {
    json device = primary();
    device["bus"] = "pcie.0";
    device["bus_kind"] = "RootBus";
    return device;
}

// FO-CFG-02 either way: QEMU 10 and 11 refuse to start...
TEST_F(TraceChecker_test, FO_CFG_02_RootBusPrimaryRefusedAtStart) {
    Trace trace{{standby(), root_bus_primary()}};
    trace.input("start").input("start-error", {{"text", "qemu-system-x86_64: -device e1000e,bus=pcie.0: Bus "
                                                        "'pcie.0' does not support hotplugging"}});
    expect_conformant(trace);
}

// ...QEMU 7.2 starts, hides the primary, and at the plug warns and never shows it.
TEST_F(TraceChecker_test, FO_CFG_02_RootBusPrimaryRefusedAtThePlugAsInQemu72) {
    Trace trace{{standby(), root_bus_primary()}};
    trace.input("start")
        .pci({"net1"})
        .ack()
        .event("FAILOVER_NEGOTIATED", {{"device-id", "net1"}})
        .stderr_line("qemu-system-x86_64: warning: Bus 'pcie.0' does not support hotplugging")
        .pci({"net1"});
    expect_conformant(trace);
}

TEST_F(TraceChecker_test, FO_CFG_02_RootBusPrimaryRefusedAtThePlugWithoutAWarning) {
    Trace trace{{standby(), root_bus_primary()}};
    trace.input("start").pci({"net1"}).ack().event("FAILOVER_NEGOTIATED", {{"device-id", "net1"}}).pci({"net1"});
    EXPECT_EQ(check(trace).violation->rule, "FO-CFG-02");
}

TEST_F(TraceChecker_test, FO_CFG_02_RootBusPrimaryShownAfterAll) {
    Trace trace{{standby(), root_bus_primary()}};
    trace.input("start")
        .pci({"net1"})
        .ack()
        .event("FAILOVER_NEGOTIATED", {{"device-id", "net1"}})
        .stderr_line("qemu-system-x86_64: warning: Bus 'pcie.0' does not support hotplugging")
        .pci({"net1", "hostdev0"});
    EXPECT_EQ(check(trace).violation->rule, "FO-CFG-02");
}

TEST_F(TraceChecker_test, FO_CFG_04_APairIdNamingNoStandbyIsVisibleAndWarned) {
    Trace trace{{standby(), primary("hostdev0", "net9")}};
    trace.input("start")
        .pci({"net1", "hostdev0"})
        .ack()
        .event("FAILOVER_NEGOTIATED", {{"device-id", "net1"}})
        .stderr_line("qemu-system-x86_64: warning: Primary device not found")
        .stderr_line("Virtio-net failover will not work. Make sure primary device has parameter "
                     "failover_pair_id=net1")
        .pci({"net1", "hostdev0"});
    expect_conformant(trace);
}

TEST_F(TraceChecker_test, FO_CFG_05_FailoverOffNegotiatesNothing) {
    Trace trace{{standby("net1", false), primary()}};
    trace.input("start").pci({"net1", "hostdev0"}).ack("net1", false).pci({"net1", "hostdev0"});
    expect_conformant(trace);
}

TEST_F(TraceChecker_test, FO_MIG_SRC_01_02_03_SourceMigrationWaitsForTheRelease) {
    Trace trace{{standby(), primary()}};
    trace.negotiated()
        .waiting_for_unplug()
        .pci({"net1", "hostdev0"})  // still held by the guest
        .released()
        .migration("active")
        .pci({"net1"})
        .input("transfer-done")
        .event("STOP")
        .migration("device")
        .migration("completed");
    expect_conformant(trace);
}

// Statuses no rule speaks of are not judged, present or absent: QEMU 7.2 goes
// from active to completed without "device".
TEST_F(TraceChecker_test, FO_MIG_SRC_01_02_03_NoDeviceStatusAsInQemu72) {
    Trace trace{{standby(), primary()}};
    trace.negotiated()
        .waiting_for_unplug()
        .released()
        .migration("active")
        .pci({"net1"})
        .input("transfer-done")
        .event("STOP")
        .migration("completed");
    expect_conformant(trace);
}

// QEMU 11.1 reports "failing" before "failed".
TEST_F(TraceChecker_test, FO_MIG_SRC_07_FailingBeforeFailedAsInQemu111) {
    Trace trace{{standby(), primary()}};
    trace.unplug_timeout(30000).negotiated().waiting_for_unplug();
    trace.at(30100)
        .stderr_line("qemu-system-x86_64: warning: migration: partially unplugged device on failure")
        .migration("failing")
        .migration("failed")
        .pci({"net1", "hostdev0"});
    expect_conformant(trace);
}

// An unjudged status excuses nothing: "active" while the guest holds the primary
// still breaks FO-MIG-SRC-03 when "device" follows it.
TEST_F(TraceChecker_test, FO_MIG_SRC_03_ActiveWhileHeldEvenWithDeviceAfter) {
    Trace trace{{standby(), primary()}};
    trace.negotiated().waiting_for_unplug().migration("active").migration("device");
    EXPECT_EQ(check(trace).violation->rule, "FO-MIG-SRC-03");
}

TEST_F(TraceChecker_test, FO_MIG_SRC_04_CancelInWaitUnplugPlugsThePrimaryBack) {
    Trace trace{{standby(), primary()}};
    trace.negotiated()
        .waiting_for_unplug()
        .input("migrate-cancel")
        .migration("cancelling")
        .released()
        .migration("cancelled")
        .pci({"net1", "hostdev0"});
    expect_conformant(trace);
}

TEST_F(TraceChecker_test, FO_MIG_SRC_07_UnplugTimeoutFailsTheMigration) {
    Trace trace{{standby(), primary()}};
    trace.unplug_timeout(30000).negotiated().waiting_for_unplug();
    trace.at(30100)
        .stderr_line("qemu-system-x86_64: warning: migration: partially unplugged device on failure")
        .migration("failed")
        .pci({"net1", "hostdev0"});
    expect_conformant(trace);
}

// The warning the rule needs is QEMU's phrase: another line on stderr is not it.
TEST_F(TraceChecker_test, FO_MIG_SRC_07_AnotherStderrLineIsNotTheWarning) {
    Trace trace{{standby(), primary()}};
    trace.unplug_timeout(30000).negotiated().waiting_for_unplug();
    trace.at(30100)
        .stderr_line("qemu-system-x86_64: warning: something else")
        .migration("failed")
        .pci({"net1", "hostdev0"});
    EXPECT_EQ(check(trace).violation->rule, "FO-MIG-SRC-07");
}

// QEMU 10 (cases/failover/migrate/unreleased.py): a guest that never ejects the
// primary; after migrate_cancel in wait-unplug QEMU waits 30 s, then ends the
// migration as cancelled and prints a warning that does not name the primary.
constexpr const char* kQemuPartialUnplugWarning =
    "qemu-system-x86_64: warning: migration: partially unplugged device on failure";

// Up to the cancel of a migration the guest holds up; the cancel at t=20000 ms.
void cancel_while_held(Trace& trace) {
    trace.negotiated().waiting_for_unplug().at(20000).input("migrate-cancel").migration(
        "cancelling");
}

TEST_F(TraceChecker_test, FO_MIG_SRC_04_07_CancelUnplugTimeoutEndsCancellingAsCancelled) {
    Trace trace{{standby(), primary()}};
    trace.cancel_unplug_timeout(30000);
    cancel_while_held(trace);
    trace.at(20000 + 30200)
        .migration("cancelled")
        .pci({"net1", "hostdev0"})  // the guest still holds it
        .stderr_line(kQemuPartialUnplugWarning);
    expect_conformant(trace);
}

TEST_F(TraceChecker_test, FO_MIG_SRC_04_CancelledBeforeTheCancelUnplugTimeout) {
    Trace trace{{standby(), primary()}};
    trace.cancel_unplug_timeout(30000);
    cancel_while_held(trace);
    trace.at(20000 + 10000).migration("cancelled");
    const std::size_t cancelled = trace.last();
    trace.pci({"net1", "hostdev0"}).stderr_line(kQemuPartialUnplugWarning);
    const Violation violation = expect_violation(trace, "FO-MIG-SRC-04", cancelled);
    EXPECT_EQ(violation.expected, "no judged event was pending");
}

TEST_F(TraceChecker_test, FO_MIG_SRC_04_CancelledWithoutReleaseOrHostTimeout) {
    Trace trace{{standby(), primary()}};  // cancel_unplug_timeout_ms absent
    cancel_while_held(trace);
    trace.at(20000 + 30200).migration("cancelled");
    const std::size_t cancelled = trace.last();
    trace.pci({"net1", "hostdev0"}).stderr_line(kQemuPartialUnplugWarning);
    expect_violation(trace, "FO-MIG-SRC-04", cancelled);
    trace.cancel_unplug_timeout(nullptr);  // null: the same
    expect_violation(trace, "FO-MIG-SRC-04", cancelled);
}

TEST_F(TraceChecker_test, FO_MIG_SRC_07_CancelUnplugTimeoutWithoutAWarning) {
    Trace trace{{standby(), primary()}};
    trace.cancel_unplug_timeout(30000);
    cancel_while_held(trace);
    trace.at(20000 + 30200).migration("cancelled");
    const std::size_t fired = trace.last();  // the model's timeout fires before this entry
    trace.pci({"net1", "hostdev0"});
    const Violation violation = expect_violation(trace, "FO-MIG-SRC-07", fired);
    EXPECT_TRUE(violation.at_end_of_trace);
}

TEST_F(TraceChecker_test, FO_MIG_TGT_01_02_TargetPlugsAfterTheStateIsLoaded) {
    Trace trace{{standby(), primary()}, "target"};
    trace.input("start")
        .pci({"net1"})
        .input("incoming")
        .migration("setup")
        .migration("active")
        .pci({"net1"})
        .input("incoming-loaded", {{"standbys", {"net1"}}})
        .event("FAILOVER_NEGOTIATED", {{"device-id", "net1"}})
        .event("RESUME")
        .migration("completed")
        .pci({"net1", "hostdev0"});
    expect_conformant(trace);
}

// A target no source migrated to owes no MIGRATION status; one that resumed does.
TEST_F(TraceChecker_test, FO_MIG_TGT_01_ATargetNeverMigratedToOwesNoStatus) {
    Trace never{{standby(), primary()}, "target"};
    never.input("start").pci({"net1"}).input("incoming").migration("setup").pci({"net1"});
    expect_conformant(never);
    Trace resumed{{standby(), primary()}, "target"};
    resumed.input("start").pci({"net1"}).input("incoming").pci({"net1"}).event("RESUME");
    EXPECT_TRUE(check(resumed).violation.has_value());
}

TEST_F(TraceChecker_test, EventsMayArriveAfterLaterInputs) {
    Trace trace{{standby(), primary()}};
    trace.input("start").ack().input("migrate").event("FAILOVER_NEGOTIATED", {{"device-id", "net1"}})
        .pci({"net1", "hostdev0"}).migration("setup").event("UNPLUG_PRIMARY", {{"device-id", "hostdev0"}})
        .migration("wait-unplug");
    expect_conformant(trace);
}

TEST_F(TraceChecker_test, AMutatedModelAcceptsItsOwnTrace) {
    Trace trace{{standby(), primary()}};
    trace.negotiated().input("migrate").migration("setup").migration("wait-unplug");
    expect_conformant(trace, Mutations{Mutation::NoUnplugPrimaryEvent});
    EXPECT_FALSE(check(trace).conformant);
}

// The harness snapshots query-pci at the end of every case: a plug the host owed
// and no snapshot showed is unmet, not a note.
TEST_F(TraceChecker_test, FO_NEG_02_UnconfirmedPlugWithoutALaterSnapshotIsAViolation) {
    Trace trace{{standby(), primary()}};
    trace.input("start").ack().event("FAILOVER_NEGOTIATED", {{"device-id", "net1"}});
    const Verdict verdict = check(trace);
    ASSERT_FALSE(verdict.conformant);
    EXPECT_EQ(verdict.violation->rule, "FO-NEG-02");
    EXPECT_EQ(verdict.violation->observed, "no pci snapshot after it");
}

// --- violations --------------------------------------------------------------

TEST_F(TraceChecker_test, FO_NEG_01_NegotiatedBeforeTheAck) {
    Trace trace{{standby(), primary()}};
    trace.input("start").event("FAILOVER_NEGOTIATED", {{"device-id", "net1"}});
    const Violation violation = expect_violation(trace, "FO-NEG-01", 1);
    EXPECT_EQ(violation.expected, "no judged event was pending");
    EXPECT_EQ(violation.observed, R"(FAILOVER_NEGOTIATED {"device-id":"net1"})");
}

TEST_F(TraceChecker_test, FO_NEG_01_PrimaryVisibleBeforeTheAck) {
    Trace trace{{standby(), primary()}};
    trace.input("start").pci({"net1"}).pci({"net1", "hostdev0"});
    const Violation violation = expect_violation(trace, "FO-NEG-01", 2);
    EXPECT_EQ(violation.observed, "hostdev0 visible");
    EXPECT_EQ(violation.expected, "hostdev0 absent (the model's state)");
}

TEST_F(TraceChecker_test, FO_NEG_02_NegotiatedNamesTheWrongDevice) {
    Trace trace{{standby(), primary()}};
    trace.input("start").ack().event("FAILOVER_NEGOTIATED", {{"device-id", "hostdev0"}});
    const Violation violation = expect_violation(trace, "FO-NEG-02", 2);
    EXPECT_EQ(violation.expected,
              R"(pending: FAILOVER_NEGOTIATED {"device-id":"net1"} (FO-NEG-02, from entry 1))");
}

TEST_F(TraceChecker_test, FO_NEG_02_NoNegotiationAfterTheAck) {
    Trace trace{{standby(), primary()}};
    trace.input("start").ack().pci({"net1"});
    const Violation violation = expect_violation(trace, "FO-NEG-02", 1);
    EXPECT_TRUE(violation.at_end_of_trace);
    EXPECT_EQ(violation.observed, "never observed by the end of the trace");
}

TEST_F(TraceChecker_test, FO_NEG_02_PrimaryAbsentAfterItsNegotiationWasObserved) {
    Trace trace{{standby(), primary()}};
    trace.input("start").ack().event("FAILOVER_NEGOTIATED", {{"device-id", "net1"}}).pci({"net1"});
    expect_violation(trace, "FO-NEG-02", 3);
}

TEST_F(TraceChecker_test, FO_NEG_03_NegotiatedWithoutBit62) {
    Trace trace{{standby(), primary()}};
    trace.input("start").ack("net1", false).event("FAILOVER_NEGOTIATED", {{"device-id", "net1"}});
    expect_violation(trace, "FO-NEG-03", 2);
}

TEST_F(TraceChecker_test, FO_MIG_SRC_03_ActiveWhileThePrimaryIsHeld) {
    Trace trace{{standby(), primary()}};
    trace.negotiated().waiting_for_unplug().migration("active");
    expect_violation(trace, "FO-MIG-SRC-03", trace.last());
}

TEST_F(TraceChecker_test, FO_MIG_SRC_03_TransferDoneInWaitUnplug) {
    Trace trace{{standby(), primary()}};
    trace.negotiated().waiting_for_unplug().input("transfer-done");
    expect_violation(trace, "FO-MIG-SRC-03", trace.last());
}

TEST_F(TraceChecker_test, FO_MIG_SRC_01_NoUnplugPrimaryBeforeWaitUnplug) {
    Trace trace{{standby(), primary()}};
    trace.negotiated().input("migrate").migration("setup").migration("wait-unplug");
    const Violation violation = expect_violation(trace, "FO-MIG-SRC-01", trace.last());
    EXPECT_EQ(violation.expected, R"(UNPLUG_PRIMARY {"device-id":"hostdev0"} first (emitted at entry 5))");
}

TEST_F(TraceChecker_test, FO_MIG_SRC_01_NoUnplugPrimaryAtAll) {
    Trace trace{{standby(), primary()}};
    trace.negotiated().input("migrate");
    const std::size_t migrate = trace.last();
    trace.migration("setup");
    const Violation violation = expect_violation(trace, "FO-MIG-SRC-01", migrate);
    EXPECT_TRUE(violation.at_end_of_trace);
}

TEST_F(TraceChecker_test, FO_MIG_SRC_01_ReleaseNobodyAskedFor) {
    Trace trace{{standby(), primary()}};
    trace.negotiated().released();
    expect_violation(trace, "FO-MIG-SRC-01", trace.last());
}

TEST_F(TraceChecker_test, FO_MIG_SRC_04_NoReplugAfterCancel) {
    Trace trace{{standby(), primary()}};
    trace.negotiated()
        .waiting_for_unplug()
        .input("migrate-cancel")
        .migration("cancelling")
        .released()
        .migration("cancelled")
        .pci({"net1"});
    // The released primary stayed on QEMU's bus (partially unplugged); once plugged
    // back, a snapshot without it breaks the rule that plugs it back.
    const Verdict verdict = check(trace);
    ASSERT_FALSE(verdict.conformant);
    EXPECT_EQ(verdict.violation->rule, "FO-MIG-SRC-04");
    EXPECT_EQ(verdict.violation->observed, "hostdev0 absent");
}

TEST_F(TraceChecker_test, FO_MIG_SRC_04_NoReplugByTheLastSnapshot) {
    Trace trace{{standby(), primary()}};
    trace.negotiated().waiting_for_unplug().input("migrate-cancel").migration("cancelling").released();
    const std::size_t release = trace.last();
    trace.pci({"net1"});  // taken before the cancelled event: not yet due
    const Violation violation = expect_violation(trace, "FO-MIG-SRC-04", release);
    EXPECT_TRUE(violation.at_end_of_trace) << violation.message();  // MIGRATION cancelled never came
}

TEST_F(TraceChecker_test, FO_MIG_TGT_02_ResumeBeforeTheNegotiation) {
    Trace trace{{standby(), primary()}, "target"};
    trace.input("start").input("incoming").migration("setup").migration("active")
        .input("incoming-loaded", {{"standbys", {"net1"}}}).event("RESUME");
    expect_violation(trace, "FO-MIG-TGT-02", trace.last());
}

TEST_F(TraceChecker_test, FO_MIG_TGT_01_NegotiatedBeforeTheLoad) {
    Trace trace{{standby(), primary()}, "target"};
    trace.input("start").input("incoming").event("FAILOVER_NEGOTIATED", {{"device-id", "net1"}});
    expect_violation(trace, "FO-MIG-TGT-01", trace.last());
}

TEST_F(TraceChecker_test, FO_MIG_TGT_01_PrimaryVisibleBeforeTheLoad) {
    Trace trace{{standby(), primary()}, "target"};
    trace.input("start").input("incoming").pci({"net1", "hostdev0"});
    expect_violation(trace, "FO-MIG-TGT-01", 2);
}

TEST_F(TraceChecker_test, FO_CFG_03_RefusalWarningNeverPrinted) {
    json igb = primary("hostdev0", "net1", "igb");
    igb["multifunction"] = true;
    Trace trace{{standby(), igb}};
    trace.input("start").ack().event("FAILOVER_NEGOTIATED", {{"device-id", "net1"}})
        .stderr_line("qemu-system-x86_64: warning: host doesn't support requested feature");
    const Violation violation = expect_violation(trace, "FO-CFG-03", 1);
    EXPECT_TRUE(violation.at_end_of_trace);
}

TEST_F(TraceChecker_test, FO_CFG_03_RefusedPrimaryVisible) {
    json igb = primary("hostdev0", "net1", "igb");
    igb["multifunction"] = true;
    Trace trace{{standby(), igb}};
    trace.input("start").ack().event("FAILOVER_NEGOTIATED", {{"device-id", "net1"}})
        .pci({"net1", "hostdev0"});
    expect_violation(trace, "FO-CFG-03", 3);
}

TEST_F(TraceChecker_test, FO_CFG_01_StartedAlthoughThePrimaryHasNoId) {
    Trace trace{{standby(), primary("")}};
    trace.input("start").pci({"net1"});
    const Violation violation = expect_violation(trace, "FO-CFG-01", 0);
    EXPECT_TRUE(violation.at_end_of_trace);
}

TEST_F(TraceChecker_test, FO_CFG_05_Bit62AckedOnAFailoverOffStandby) {
    Trace trace{{standby("net1", false), primary()}};
    trace.input("start").ack("net1", true);
    expect_violation(trace, "FO-CFG-05", 1);
}

TEST_F(TraceChecker_test, ViolationMessageNamesRuleEntryAndSentence) {
    Trace trace{{standby(), primary()}};
    trace.input("start").at(12.5).event("FAILOVER_NEGOTIATED", {{"device-id", "net1"}});
    const Violation violation = expect_violation(trace, "FO-NEG-01", 1);
    EXPECT_EQ(violation.message(),
              "FO-NEG-01 violated at entry 1 (qmp-event, t=12.5 ms): observed "
              R"(FAILOVER_NEGOTIATED {"device-id":"net1"}; expected no judged event was pending)"
              " -- " + std::string{find_rule("FO-NEG-01")->sentence});
}

}  // namespace
}  // namespace vnetct::reference_impl
