// Shared by the failover model tests: device specs for the working pair
// (virtio-net standby + e1000e primary, each on its own root port), a one-line-per-output trace, and a base fixture. Test names start
// with the rule ids they exercise (FO_MIG_SRC_01_02_... = FO-MIG-SRC-01, -02);
// FailoverRuleCoverage_test reads them back.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "vnetct/reference_impl/failover_model.hpp"

namespace vnetct::reference_impl::test_support {

using namespace std::chrono_literals;

// -device virtio-net-pci,id=<id>,bus=<bus>,failover=on
inline DeviceSpec standby_spec(std::string id, std::string bus) {
    DeviceSpec spec;
    spec.id = std::move(id);
    spec.driver = "virtio-net-pci";
    spec.failover = true;
    spec.bus = std::move(bus);
    return spec;
}

// -device e1000e,id=<id>,bus=<bus>,failover_pair_id=<pair>
inline DeviceSpec primary_spec(std::string id, std::string pair, std::string bus) {
    DeviceSpec spec;
    spec.id = std::move(id);
    spec.driver = "e1000e";
    spec.failover_pair_id = std::move(pair);
    spec.bus = std::move(bus);
    return spec;
}

// "MIGRATION wait-unplug", "UNPLUG_PRIMARY hostdev0", "FAILOVER_NEGOTIATED net1",
// "plugged hostdev0", "unplugged hostdev0", "warning hostdev0 FO-CFG-03",
// "start-error hostdev0 FO-CFG-01", "command-error hostdev1 FO-CFG-09".
inline std::vector<std::string> trace(const std::vector<Output>& outputs) {
    std::vector<std::string> lines;
    for (const Output& output : outputs) {
        std::string line;
        switch (output.kind) {
            case OutputKind::QmpEvent:
                line = output.name;
                for (const char* key : {"status", "device-id", "device"}) {
                    if (output.data.contains(key)) {
                        line += " " + output.data[key].get<std::string>();
                        break;
                    }
                }
                break;
            case OutputKind::Plugged:
            case OutputKind::Unplugged:
                line = std::string{to_string(output.kind)} + " " + output.name;
                break;
            default:
                line = std::string{to_string(output.kind)} + " " + output.name + " " + output.rule;
                break;
        }
        lines.push_back(line);
    }
    return lines;
}

using Lines = std::vector<std::string>;

// No mutation; the host's unplug timeouts (FO-MIG-SRC-07): from migrate() and from a
// cancel in wait-unplug.
inline ModelOptions with_timeouts(std::optional<Milliseconds> unplug,
                                  std::optional<Milliseconds> after_cancel) {
    return ModelOptions{.unplug_timeout = unplug, .cancel_unplug_timeout = after_cancel,
                        .mutations = {}};
}

class FailoverModel_fixture : public ::testing::Test {
  protected:
    // A fresh host with the given devices cold-plugged, started at t=0.
    void start_with(const std::vector<DeviceSpec>& specs, Role role = Role::Source,
                    ModelOptions options = {}) {
        m_sut = FailoverHost{role, std::move(options)};
        for (const DeviceSpec& spec : specs) {
            ASSERT_TRUE(m_sut.cold_plug(spec).has_value()) << spec.id;
        }
        ASSERT_TRUE(m_sut.start(0ms).has_value());
    }

    // The working pair net1/hostdev0 (plus net2/hostdev1 with `pairs` = 2),
    // started and negotiated by the guest.
    void start_negotiated(int pairs = 1, ModelOptions options = {}) {
        std::vector<DeviceSpec> specs{standby_spec("net1", "root1"),
                                      primary_spec("hostdev0", "net1", "root2")};
        if (pairs == 2) {
            specs.push_back(standby_spec("net2", "root3"));
            specs.push_back(primary_spec("hostdev1", "net2", "root4"));
        }
        start_with(specs, Role::Source, std::move(options));
        ASSERT_TRUE(m_sut.guest_ack_features("net1", true, at(10)).has_value());
        if (pairs == 2) {
            ASSERT_TRUE(m_sut.guest_ack_features("net2", true, at(10)).has_value());
        }
        (void)m_sut.take_outputs();
    }

    // Time in milliseconds since the start; every step of a test moves it on.
    static Milliseconds at(long long milliseconds) { return Milliseconds{milliseconds}; }

    Lines outputs() { return trace(m_sut.take_outputs()); }

    PrimaryState state_of(std::string_view id) {
        auto state = m_sut.primary_state(id);
        EXPECT_TRUE(state.has_value()) << id;
        return state.value_or(PrimaryState::Refused);
    }

    FailoverHost m_sut{Role::Source};
};

}  // namespace vnetct::reference_impl::test_support
