// A network namespace per test, named vnetct-lt<pid>-<n>: every TAP a test
// creates lives in it, never in the host's namespace. Deleted when the object
// goes; a global environment sweeps vnetct-lt<pid>- at the end of the test
// program, so a failed test leaves nothing behind either.
#pragma once

#include <string>
#include <vector>

#include "vnetct/host_agent/process.hpp"

namespace vnetct::livetap::test_support {

class TestNetns {
  public:
    TestNetns();
    ~TestNetns();
    TestNetns(const TestNetns&) = delete;
    TestNetns& operator=(const TestNetns&) = delete;

    [[nodiscard]] const std::string& name() const { return m_name; }
    [[nodiscard]] bool created() const { return m_created; }
    // `ip -n <name> <arguments>`; the output, or the error message with "ip failed: " in front.
    std::string ip(const std::vector<std::string>& arguments, bool* ok = nullptr) const;
    // The ifindex of `device` as `ip` sees it; 0 if it does not exist.
    [[nodiscard]] int ifindex(const std::string& device) const;

  private:
    std::string m_name;
    bool m_created = false;
};

// "vnetct-lt<pid>-": what this test program's namespaces start with.
[[nodiscard]] std::string netns_prefix();

}  // namespace vnetct::livetap::test_support
