#include "vnetct/host_agent/interruption.hpp"

#include <utility>

namespace vnetct::host_agent {
namespace {
thread_local std::function<bool()> current_check;
}  // namespace

InterruptionCheck::InterruptionCheck(std::function<bool()> check)
    : m_previous(std::exchange(current_check, std::move(check))) {}

InterruptionCheck::~InterruptionCheck() { current_check = std::move(m_previous); }

bool interruption_requested() { return current_check && current_check(); }

}  // namespace vnetct::host_agent
