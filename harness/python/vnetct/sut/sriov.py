"""The host side of `--profile vf`: prepares the VFs a host profile names
(vnetct_native.sriov_prepare: VF count, MAC/VLAN/trust through the PF, vfio-pci
binding) and always puts the host back (sriov_restore), also after a failure
or Ctrl-C. Every change is written to the undo journal before it is made; a
journal left behind by a run that died (SIGKILL, power) is restored by the
next `vnetct run --profile vf` before anything else.

Test-only overrides (never needed on a real host): VNETCT_SYSFS_ROOT (a fake
sysfs tree), VNETCT_SRIOV_NETNS (run the VF link commands in that network
namespace), VNETCT_SRIOV_JOURNAL (the journal file)."""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, List, Optional

from vnetct.core import run_lock
from vnetct.sut.host_profile import HostProfile
from vnetct.core.native import vnetct_native

DEFAULT_JOURNAL = Path("/run/vnetct/sriov-journal.json")  # tmpfs: gone at reboot, like the sysfs state it undoes


def journal_path() -> Path:
    return Path(os.environ.get("VNETCT_SRIOV_JOURNAL", str(DEFAULT_JOURNAL)))


def lock_path() -> Path:
    """Held by the run that has the host (its whole life): a second run fails fast."""
    return journal_path().with_name(journal_path().name + ".lock")


def sysfs_root() -> str:
    return os.environ.get("VNETCT_SYSFS_ROOT", "/sys")


def link_netns() -> str:
    return os.environ.get("VNETCT_SRIOV_NETNS", "")


class SriovSetupError(Exception):
    """The host could not be prepared (or an old journal could not be undone)."""


@dataclass
class PreparedHost:
    profile: HostProfile
    pf_address: str
    total_vfs: int
    vfs: List[dict]                       # sriov_prepare's answer, in profile.vf_indices() order
    restore_report: Optional[dict] = None  # filled in when the host has been put back
    lock: Optional[run_lock.HeldLock] = None  # the host's lock: whoever holds it has the host
    steps: List[str] = field(default_factory=list)

    @property
    def primary_address(self) -> str:
        return self.vfs[0]["address"]

    @property
    def target_address(self) -> Optional[str]:
        return self.vfs[1]["address"] if len(self.vfs) > 1 else None

    def to_json(self) -> dict:
        """What the case runner gets (--vnetct-vf) and results.json keeps under sut.sriov."""
        return {"pf": self.profile.pf, "pf_address": self.pf_address, "total_vfs": self.total_vfs,
                "num_vfs": self.profile.num_vfs, "mac": self.profile.vf.mac, "vfs": self.vfs,
                "address": self.primary_address, "target_address": self.target_address,
                "standby": {"bridge": self.profile.standby.bridge, "macvtap_mode": self.profile.standby.macvtap_mode},
                "host_config": str(self.profile.path)}


def restore_journal(say: Callable[[str], None]) -> dict:
    """Undoes whatever the journal holds; returns sriov_restore's report."""
    report = vnetct_native.sriov_restore(str(journal_path()), sysfs_root(), link_netns())
    for line in report["undone"]:
        say(f"vnetct: restored {line}")
    for line in report["failures"]:
        say(f"vnetct: COULD NOT RESTORE {line}")
    return report


def restore_left_behind(say: Callable[[str], None]) -> None:
    if not journal_path().exists():
        return
    say(f"vnetct: an earlier run left the undo journal {journal_path()}: restoring the host first")
    try:
        report = restore_journal(say)
    except vnetct_native.SriovError as error:
        raise SriovSetupError(f"{journal_path()}: {error} (fix or remove it by hand)") from error
    if report["failures"]:
        raise SriovSetupError(f"{journal_path()}: {len(report['failures'])} change(s) of an earlier run could not "
                              f"be undone (listed above); the journal stays for another try")


@contextlib.contextmanager
def prepared_host(profile: HostProfile, say: Callable[[str], None] = print) -> Iterator[PreparedHost]:
    """The host prepared as `profile` says, for the duration of the block;
    restored when it ends, however it ends. SriovSetupError if the PF is not
    there or not suitable (then nothing was changed) or if a step failed (then
    what was done is undone before the error propagates)."""
    try:
        lock = run_lock.hold_exclusive(lock_path(), {"pid": os.getpid(), "command": " ".join(sys.argv)})
    except run_lock.LockBusy as busy:
        raise SriovSetupError(f"another run has the host ({run_lock.describe(busy.holder)}; lock {busy.path}): "
                              f"one run of the vf profile at a time; nothing was changed") from None
    try:
        with _prepared(profile, say) as host:
            host.lock = lock
            yield host
    finally:
        lock.release(remove=False)


@contextlib.contextmanager
def _prepared(profile: HostProfile, say: Callable[[str], None]) -> Iterator[PreparedHost]:
    restore_left_behind(say)
    try:
        probe = vnetct_native.sriov_probe(profile.pf, sysfs_root())
    except vnetct_native.SriovError as error:
        raise SriovSetupError(f"{profile.path}: pf.netdev {profile.pf}: {error}; the host was not changed") from error
    journal_path().parent.mkdir(parents=True, exist_ok=True)
    host = None
    try:
        say(f"vnetct: preparing {profile.pf} ({probe['address']}, sriov_totalvfs {probe['total_vfs']}, "
            f"sriov_numvfs {probe['num_vfs']}): {profile.num_vfs} VFs, VF {profile.vf_indices()}, MAC {profile.vf.mac}")
        try:
            vfs = vnetct_native.sriov_prepare(profile.setup_request(), str(journal_path()), sysfs_root(),
                                              link_netns())
        except vnetct_native.SriovError as error:
            raise SriovSetupError(f"{profile.path}: preparing {profile.pf}: {error}") from error
        for vf in vfs:
            if vf["driver"] != "vfio-pci":
                raise SriovSetupError(f"{profile.path}: VF {vf['index']} ({vf['address']}) is bound to "
                                      f"{vf['driver'] or 'no driver'}, not vfio-pci (vf.vfio is false: bind it "
                                      f"yourself, or set vf.vfio true)")
            say(f"vnetct: VF {vf['index']} is {vf['address']} (IOMMU group {vf['iommu_group'] or '?'}, "
                f"{vf['driver']})")
        host = PreparedHost(profile, probe["address"], probe["total_vfs"], vfs)
        yield host
    finally:
        say("vnetct: putting the host back (undo journal)")
        report = restore_journal(say)
        if host is not None:
            host.restore_report = report
        if report["failures"]:
            say(f"vnetct: {len(report['failures'])} change(s) could not be undone; {journal_path()} keeps them "
                f"and the next run --profile vf retries")
