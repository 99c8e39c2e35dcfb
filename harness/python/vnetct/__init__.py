"""vnetct's Python half: the command line, set-up, the pytest plugin and the VM factory.

The native core (QMP and guest agent clients, QEMU launcher, topology, rules)
is the pybind11 module `vnetct_native`, built by CMake into build/harness/.
"""
