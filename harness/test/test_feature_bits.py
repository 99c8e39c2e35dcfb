"""Where the host's view of the feature bits comes from (vnetct.failover.guest
standby_features): QEMU's x-query-virtio-status, or, where that QEMU cannot
answer it (11.1.3 aborts on it: the Sut's capability virtio-status), the
guest's word for the ack with the offer unknown."""

from types import SimpleNamespace

from vnetct.failover.guest import standby_features
from vnetct.vm.guest import Nic, VmSpec

MAC = "52:54:00:12:34:56"


def _vm(lacks, bits, status=None):
    spec = VmSpec("x", nics=[Nic("virtio-net-pci", MAC, id="net1", properties={"failover": "on"})])
    netdevs = [{"name": "eth0", "driver": "virtio_net", "mac": MAC, "virtio_feature_bits": bits}]
    asked = []
    qmp = SimpleNamespace(execute=lambda command, arguments=None: asked.append(command) or status)
    return SimpleNamespace(spec=spec, lacks=lacks, report=lambda: netdevs, qmp=qmp), asked


def test_without_the_host_view_the_guest_says_whether_it_acked():
    reason = "x-query-virtio-status is unusable on this QEMU (QEMU killed by signal 6)"
    acked, asked = _vm(lambda capability: reason if capability == "virtio-status" else None, [0, 5, 62])
    bits = standby_features(acked, "net1")
    assert (bits["offered"], bits["acked"], bits["host_view"]) == (None, True, reason) and asked == []
    not_acked, _ = _vm(lambda capability: reason, [0, 5])
    assert standby_features(not_acked, "net1")["acked"] is False


def test_with_the_host_view_qemu_says_what_it_offered_and_what_was_acked():
    status = {"host-features": {"dev-features": ["VIRTIO_NET_F_STANDBY: Standby"]},
              "guest-features": {"dev-features": []}}
    vm, asked = _vm(lambda capability: None, [62], status)
    bits = standby_features(vm, "net1")
    assert (bits["offered"], bits["acked"]) == (True, False) and asked == ["x-query-virtio-status"]
