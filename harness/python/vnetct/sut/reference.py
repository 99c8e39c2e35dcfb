"""Profile `reference`: the reference failover model plays the host and a
simulated guest plays Linux, in process (vnetct.sut.reference_vm). A fast
self-test of the cases and the trace checker; `--mutation` breaks the model
on purpose to show which cases catch it."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from vnetct.core.native import vnetct_native
from vnetct.sut.base import PROFILES, Sut, SutOptions
from vnetct.sut.reference_vm import ReferenceVm


class ReferenceSut(Sut):
    profile = PROFILES["reference"]

    def __init__(self, options: SutOptions):
        known = vnetct_native.mutation_names()
        for mutation in options.mutations:
            if mutation not in known:
                raise ValueError(f"--mutation {mutation}: unknown (known: {', '.join(known)})")
        super().__init__(options)
        self.mutations = list(options.mutations)

    def identity(self) -> dict:
        return {"profile": self.profile.name, "name": "vnetct reference failover model",
                "version": None, "binary": None, "fingerprint": None,
                "host": "vnetct reference failover model (reference_impl FailoverHost)",
                "guest": "simulated in process (no datapath)", "mutations": list(self.mutations)}

    def missing(self) -> Dict[str, str]:
        return {
            "qemu": "the reference profile is the in-process failover model: there is no QEMU binary to probe "
                    "or start",
            "datapath": "the reference profile has no datapath (no TAP, no guest network stack)",
            "target-process": "the reference profile's migration target runs inside the harness: there is no "
                              "target process to kill",
            "guest-refuses-eject": "the simulated guest cannot refuse an eject: it releases a requested primary "
                                   "at once",
            "slow-eject": "the simulated guest releases a requested primary at once: no wait-unplug window to "
                          "act in",
            "live-tap-series": "the reference profile models the failover host only, not the live-TAP series",
            "live-tap-incoming-fds": "the reference profile models the failover host only, not the live-TAP "
                                     "series",
        }

    def make_wire(self, run, index: int, taps: int):
        return None

    def make_vm(self, run, spec, artifacts: Path, sockets: Path, wire, taps: List[str],
                tap_fds: Optional[List[int]], incoming: bool) -> ReferenceVm:
        return ReferenceVm(spec, artifacts, self.mutations, on_step=lambda text: run.step(text), incoming=incoming)

    def discard_uri(self, factory, source) -> str:
        """The model needs a target to migrate to: one that nobody judges."""
        from vnetct.failover.hotplug import start_target

        return start_target(factory, source, f"{source.name}-sink").migration_uri


SUT = ReferenceSut
