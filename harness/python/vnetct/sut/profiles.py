"""SUT profiles: what plays the host under test."""

PROFILES = {
    "qemu": "real QEMU with a tiny Linux guest under the best working accelerator (default)",
    "reference": "the reference failover model as the host and a simulated guest, in process: the harness's "
                 "self-test (no VM, no datapath); --mutation breaks the model on purpose",
    "vf": "real QEMU with a real SR-IOV VF (vfio-pci) as the failover primary, set up from --host-config FILE "
          "(harness/HOST-PROFILE.md) and put back at the end",
}
