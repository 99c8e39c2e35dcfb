// vnetct-guest-agent: started by the guest's /init, talks to the host over the
// virtio-serial port org.vnetct.agent. A thin shell over the core library.
#include <iostream>

#include "vnetct/guest_agent/agent.hpp"

int main(int argc, char** argv) {
    using namespace vnetct::guest_agent;
    const auto options = parse_agent_arguments(std::vector<std::string>(argv + 1, argv + argc));
    if (!options) {
        std::cerr << "vnetct-guest-agent: " << options.error().message() << "\n" << agent_usage();
        return 2;
    }
    if (options->show_help) {
        std::cout << agent_usage();
        return 0;
    }
    return run_agent(*options);
}
