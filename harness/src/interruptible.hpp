// Blocking host-side calls from Python: without the GIL, interruptible by
// Ctrl-C, one caller per client.
#pragma once

#include <pybind11/pybind11.h>

#include <mutex>
#include <string>
#include <unordered_set>

#include "error_binding.hpp"
#include "vnetct/host_agent/errors.hpp"
#include "vnetct/host_agent/interruption.hpp"

namespace vnetct::harness {

// Runs `call` without the GIL. The call waits in slices of at most
// host_agent::wait_slice; between them the check takes the GIL and runs
// Python's pending signal handlers: one that raises (Ctrl-C's
// KeyboardInterrupt) ends the call (HostErrc::Interrupted) and its exception
// propagates from here.
template <typename Call>
auto interruptible_call(Call&& call) {
    bool raised = false;
    auto result = [&] {
        host_agent::InterruptionCheck check([&raised] {
            pybind11::gil_scoped_acquire gil;
            raised = PyErr_CheckSignals() != 0;
            return raised;
        });
        pybind11::gil_scoped_release release;
        return call();
    }();
    if (raised) {
        throw pybind11::error_already_set();
    }
    return result;
}

// One caller per client at a time: a second thread calling into a client
// that is in a call gets HostError Busy at once, never interleaved reads and
// writes on its channel. Taken with the GIL held, before the call releases it.
class ClientTurn {
  public:
    ClientTurn(const void* client, const std::string& what) : m_client(client) {
        std::lock_guard lock(mutex());
        if (!busy().insert(client).second) {
            m_client = nullptr;
            throw Failure<host_agent::HostErrc>(
                {host_agent::HostErrc::Busy, what + ": another thread is in a call on this client"});
        }
    }
    ~ClientTurn() {
        if (m_client != nullptr) {
            std::lock_guard lock(mutex());
            busy().erase(m_client);
        }
    }
    ClientTurn(const ClientTurn&) = delete;
    ClientTurn& operator=(const ClientTurn&) = delete;

  private:
    static std::mutex& mutex() {
        static std::mutex& instance = *new std::mutex();
        return instance;
    }
    static std::unordered_set<const void*>& busy() {
        static auto& instance = *new std::unordered_set<const void*>();
        return instance;
    }
    const void* m_client;
};

}  // namespace vnetct::harness
