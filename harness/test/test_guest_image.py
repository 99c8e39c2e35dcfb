"""The guest image's drivers in a real guest: every SR-IOV VF driver that
--profile vf loads (vnetct.failover.VF_DRIVERS) is in the image and loads,
in order, under the image's kernel. Boots one guest (about 10 s under TCG);
needs root and the set-up that `vnetct test` does first."""

import os
import secrets
import shutil

import pytest

from vnetct.core import paths
from vnetct.core.sweep import make_socket_root
from vnetct.failover.guest import PRIMARY_DRIVERS, VF_DRIVERS
from vnetct.vm.guest import VmSpec
from vnetct.vm.factory import RunContext, VmFactory
from vnetct.sut.base import SutOptions
from vnetct.sut.qemu import QemuSut

pytestmark = pytest.mark.heavy("boots a guest (about 10 s)")


@pytest.fixture
def factory(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    short_id = secrets.token_hex(3)
    socket_root = make_socket_root(short_id)
    sut = QemuSut(SutOptions("qemu", str(paths.DEFAULT_QEMU), [], None, lambda text: None))
    run = RunContext("test-guest-image", short_id, tmp_path, sut, socket_root)
    sut.open(run)
    made = VmFactory(run, tmp_path, "test_guest_image")
    try:
        yield made
    finally:
        problems = made.close()
        shutil.rmtree(socket_root, ignore_errors=True)
    assert not problems, problems


def test_every_vf_driver_loads_in_the_guest(factory):
    vm = factory.vm_booted(VmSpec("vf-drivers"))
    wanted = PRIMARY_DRIVERS + VF_DRIVERS
    loaded = vm.load_drivers(wanted)  # a module that fails to load fails the whole request
    assert [entry["name"] for entry in loaded] == list(wanted), loaded
    assert all(entry["status"] == "loaded" for entry in loaded), loaded
