"""Profile `vf`: real QEMU whose failover primary is a real SR-IOV VF
(vfio-pci), on a host prepared from --host-config FILE; the standby's
backend is carried where the VF's traffic goes (vnetct.sut.vf_wire)."""

from __future__ import annotations

from typing import List

from vnetct.sut.base import PROFILES, SutOptions
from vnetct.sut.qemu import QemuSut
from vnetct.sut.vf_wire import HostCarrier, sweep_host_links, vf_spec


class VfSut(QemuSut):
    profile = PROFILES["vf"]
    # Not on a real host's VF yet: a snapshot's saver would hold the VF's vfio group (and the
    # standby's macvtap) while the VM under test waits for it; never tried on such a host.
    snapshots_supported = False

    def __init__(self, options: SutOptions):
        if options.host is None:
            raise ValueError("profile vf needs the prepared host (./vnetct run --profile vf --host-config FILE "
                             "prepares it and passes it on)")
        super().__init__(options)
        self.host = options.host

    def identity(self) -> dict:
        return {**super().identity(), "profile": self.profile.name, "sriov": self.host}

    def make_wire(self, run, index: int, taps: int):
        return HostCarrier.create(self.host, f"v{run.short_id}{index:x}"[:9], taps)

    def adapt_spec(self, spec, incoming: bool):
        return vf_spec(spec, self.host, incoming)

    def sweep(self, run) -> List[str]:
        return [f"deleted host link {name}" for name in sweep_host_links(f"v{run.short_id}")]


SUT = VfSut
