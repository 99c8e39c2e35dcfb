"""The seam between the harness and a system under test (SUT).

A `Profile` is what the command line knows of a SUT before anything is set
up (its name, what it needs installed, which options it takes); it imports
nothing native, so that `./vnetct run` can check its options on a fresh
machine. A `Sut` is the running system under test: its identity, its
capabilities (and, for each one it lacks, the reason), and the VMs, wires
and migration targets the VM factory asks it for. One implementation per
profile: `qemu` (vnetct.sut.qemu), `vf` (vnetct.sut.vf), `reference`
(vnetct.sut.reference). Outside these modules nothing asks which profile
runs: a case states what it needs (`@pytest.mark.needs("datapath")`) and the
plugin skips it with the Sut's own reason."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

# What a case may need, and what having it means.
CAPABILITIES: Dict[str, str] = {
    "qemu": "a QEMU binary to probe and to start",
    "datapath": "TAPs on a wire, the guest's network stack and traffic through it",
    "target-process": "a migration target in a process of its own, which a case can kill",
    "guest-refuses-eject": "a guest that can hold a primary the host asks it to release",
    "slow-eject": "a guest whose eject takes time (native PCIe hotplug waits 5 s for the attention button), "
                  "so that a case can act while the source waits in wait-unplug",
    "igb": "the igb NIC model (SR-IOV capable, hence multifunction; QEMU 8.0 and later)",
    "live-tap-series": "the live-TAP local migration series (migration parameter, a target TAP that waits for the "
                       "source's fds: TAP incoming-fds or the netdev property x-local-migration-supported)",
    "live-tap-incoming-fds": "the live-TAP series with the TAP netdev option incoming-fds",
    "virtio-status": "QMP x-query-virtio-status: the host's own view of a virtio device's offered and acked "
                     "feature bits",
}


@dataclass(frozen=True)
class Profile:
    """A SUT profile as the command line sees it."""
    name: str
    description: str
    module: str                      # where its Sut lives (imported late: it needs the native module)
    needs_guest_image: bool = True   # the set-up builds the guest image and the agent
    needs_qemu: bool = True          # --qemu must name an executable (checked after the set-up)
    takes_mutations: bool = False    # --mutation
    takes_host_config: bool = False  # --host-config FILE (required then)
    one_lane: bool = False           # its cases cannot run in parallel lanes
    boots_guests: bool = True        # its cases wait on guests: parallel lanes by default (vnetct run -j)
    gives_figures: bool = True       # its runs measure (a datapath): vnetct certify takes it

    def usage_error(self, mutations: List[str], host_config: Optional[Path]) -> Optional[str]:
        """What is wrong with these options for this profile, or None."""
        if mutations and not self.takes_mutations:
            return f"--mutation does not apply to --profile {self.name} (only to profiles that take it: " \
                   f"{', '.join(p.name for p in PROFILES.values() if p.takes_mutations)})"
        if self.takes_host_config and host_config is None:
            return f"--profile {self.name} needs --host-config FILE"
        if host_config is not None and not self.takes_host_config:
            return f"--host-config only applies to --profile {', '.join(p.name for p in PROFILES.values() if p.takes_host_config)}"
        return None

    def sut_class(self):
        return getattr(importlib.import_module(self.module), "SUT")


PROFILES: Dict[str, Profile] = {profile.name: profile for profile in (
    Profile("qemu", "real QEMU with a tiny Linux guest under the best working accelerator (default)",
            "vnetct.sut.qemu"),
    Profile("reference", "the reference failover model as the host and a simulated guest, in process: the "
                         "harness's self-test (no VM, no datapath); --mutation breaks the model on purpose",
            "vnetct.sut.reference", needs_guest_image=False, needs_qemu=False, takes_mutations=True,
            gives_figures=False, boots_guests=False),
    Profile("vf", "real QEMU with a real SR-IOV VF (vfio-pci) as the failover primary, set up from "
                  "--host-config FILE (harness/HOST-PROFILE.md) and put back at the end",
            "vnetct.sut.vf", takes_host_config=True, one_lane=True),
)}


def profile_named(name: str) -> Profile:
    """The profile `name`; KeyError with the known ones listed."""
    try:
        return PROFILES[name]
    except KeyError:
        known = "; ".join(f"{p.name}: {p.description}" for p in PROFILES.values())
        raise KeyError(f"--profile {name}: unknown profile (known: {known})") from None


@dataclass
class SutOptions:
    """What the run was asked for: the plugin builds a Sut from these."""
    profile: str
    qemu: str
    mutations: List[str]
    host: Optional[dict]          # profile vf: the prepared host (vnetct.sut.sriov.PreparedHost.to_json)
    progress: Callable[[str], None]
    fault: Optional[str] = None   # profile qemu: a seeded host fault (vnetct.faults.catalog)


class Sut(ABC):
    """A system under test, as the VM factory and the plugin use it."""

    profile: Profile

    def __init__(self, options: SutOptions):
        self.options = options

    # -- identity and capabilities ------------------------------------------
    @abstractmethod
    def identity(self) -> dict:
        """Name, version, binary, fingerprint and whatever else says what was
        tested: results.json's `sut` (reports/RESULTS.md)."""

    @abstractmethod
    def missing(self) -> Dict[str, str]:
        """The capabilities this SUT lacks, each with the reason."""

    def lacks(self, capability: str) -> Optional[str]:
        """None if this SUT has `capability`, else why not."""
        if capability not in CAPABILITIES:
            raise KeyError(f"unknown capability '{capability}' (known: {', '.join(CAPABILITIES)})")
        return self.missing().get(capability)

    def has(self, capability: str) -> bool:
        return self.lacks(capability) is None

    # -- what the VM factory asks for -----------------------------------------
    @abstractmethod
    def make_wire(self, run, index: int, taps: int):
        """A wire with `taps` TAPs (the factory owns and destroys it), or None
        for a SUT without a datapath."""

    def adapt_spec(self, spec, incoming: bool):
        """`spec` as this SUT realises it (e.g. the emulated primary replaced
        by a real VF); the factory counts TAPs on the adapted spec."""
        return spec

    @abstractmethod
    def make_vm(self, run, spec, artifacts: Path, sockets: Path, wire, taps: List[str],
                tap_fds: Optional[List[int]], incoming: bool):
        """A VM of `spec`, not started. `incoming`: a migration target."""

    def discard_uri(self, factory, source) -> str:
        """A migration URI whose stream nobody loads (for cases that judge the
        source side only)."""
        return "exec:cat > /dev/null"

    def open(self, run) -> None:
        """The run this SUT serves (called once, before the first VM)."""
        self.run = run

    def sweep(self, run) -> List[str]:
        """What the end-of-run sweep removed beyond processes and namespaces."""
        return []
