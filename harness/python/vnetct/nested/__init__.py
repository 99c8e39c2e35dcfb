"""The nested emulated-igb path (issue 18): an L1 guest (TCG, the minimal
kernel of vnetct.setup.nested_kernel, intel-iommu) with two emulated igb
PFs standing for the source and target hosts' NICs, both on a wire on L0,
creates a VF on each, binds them to vfio-pci and runs L2 (TCG inside TCG)
whose failover primary is the source PF's VF.

  l1.py           L1: its configuration, initramfs, /init and command line
  l2.py           L2: its initramfs and command lines (saver, restored)
  l2_snapshot.py  L2's snapshot on L0: the cache key and the checked cache
  host_profiles.py  the host profile files (harness/HOST-PROFILE.md) for L1's PFs
  enslave.py      the judgement that igbvf became the failover primary
  session.py      one L1 on its wire: launch, console, marks, teardown

The first L1 boots L2 without its primary (so nothing vfio blocks the
save), saves it to a file and sends it to L0 over a virtio-serial port;
L0 caches it (keyed by everything that makes it). Every later L1 carries
the snapshot in its initramfs and restores L2 from it: the restore sets
L2's features, QEMU plugs the VF (FAILOVER_NEGOTIATED) and igbvf enslaves
under net_failover."""

import sys

from vnetct.core import paths

IMAGE_TOOLS = paths.REPO / "guest_agent" / "image"


def image_tools() -> None:
    """guest_agent/image's modules (cpio_newc, initramfs_content) importable, as for the guest image."""
    if str(IMAGE_TOOLS) not in sys.path:
        sys.path.insert(0, str(IMAGE_TOOLS))
