"""`vnetct prepare-image` (vnetct.cli.prepare_image) on a small qcow2 built here with
libguestfs itself (no download): a Debian-12-like root filesystem with the
guest-image cache's real kernel modules for failover and iavf. Each libguestfs
launch boots its appliance (about 20 s under TCG), so the image is built once
and the cases share it. Needs root and the set-up `vnetct test` does."""

import os
from pathlib import Path

import pytest

from vnetct.cli import prepare_image as image_prep
from vnetct.core import paths

pytestmark = pytest.mark.heavy("builds a qcow2 and boots libguestfs' appliance (about 190 s)")

AGENT = paths.BUILD / "guest_agent" / "vnetct-guest-agent"
WANTED = ("failover", "net_failover", "virtio_net", "iavf", "libeth", "libie")


def _kernel_package():
    packages = sorted(paths.IMAGE_CACHE.glob("kernel-*"))
    if not packages:
        pytest.skip("no guest-image kernel package (./vnetct setup)")
    return packages[-1], packages[-1].name.removeprefix("kernel-")


@pytest.fixture(scope="module")
def base_image(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    package, version = _kernel_package()
    image = tmp_path_factory.mktemp("images") / "debian-like.qcow2"
    modules = package / "lib" / "modules" / version
    found = {path.name.split(".ko")[0]: path for path in modules.rglob("*.ko*")}
    with image_prep.opened(_create(image), readonly=False) as g:
        g.part_disk("/dev/sda", "mbr")
        g.mkfs("ext4", "/dev/sda1")
        g.mount("/dev/sda1", "/")
        for directory in ("/etc/systemd/system", "/boot", "/usr/bin", "/usr/sbin", "/var/log", "/bin",
                          f"/lib/modules/{version}/kernel"):
            g.mkdir_p(directory)
        g.write("/etc/os-release", 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
                                   'VERSION_ID="12"\nVERSION="12 (bookworm)"\nID=debian\n')
        g.write("/etc/debian_version", "12.8\n")
        g.write("/etc/fstab", "/dev/sda1 / ext4 defaults 0 1\n")
        g.write("/etc/hostname", "vendor-image\n")
        g.upload(str(package / "boot" / f"vmlinuz-{version}"), f"/boot/vmlinuz-{version}")
        dep = []
        for name in WANTED:
            relative = found[name].relative_to(modules)
            g.mkdir_p(f"/lib/modules/{version}/{relative.parent}")
            g.upload(str(found[name]), f"/lib/modules/{version}/{relative}")
            dep.append(f"{relative}:")
        g.write(f"/lib/modules/{version}/modules.dep", "\n".join(dep) + "\n")
        g.write(f"/lib/modules/{version}/modules.builtin", "kernel/drivers/net/ethernet/intel/e1000/e1000.ko\n")
    return image, version


def _create(path: Path) -> Path:
    import guestfs

    g = guestfs.GuestFS(python_return_dict=True)
    try:
        g.disk_create(str(path), "qcow2", 96 * 1024 * 1024)
    finally:
        g.close()
    return path


@pytest.fixture(scope="module")
def prepared(base_image, tmp_path_factory):
    image, version = base_image
    output = tmp_path_factory.mktemp("prepared") / "prepared.qcow2"
    before = image.read_bytes()
    record = image_prep.prepare(image, "iavf", AGENT, output)
    assert image.read_bytes() == before, "--output must leave the source image untouched"
    return output, version, record


def test_prepare_records_os_kernel_and_modules(prepared):
    _, version, record = prepared
    assert record["os"]["distro"] == "debian" and record["os"]["version"].startswith("12")
    assert [k["version"] for k in record["kernels"]] == [version]
    assert record["kernels"][0]["modules"] == {"failover": "module", "net_failover": "module",
                                               "virtio_net": "module", "iavf": "module"}
    assert set(record["changed"]) == {image_prep.AGENT_PATH, image_prep.UNIT_PATH, image_prep.WANTS_LINK}


def test_agent_unit_and_link_are_in_the_image_and_logs_come_back(prepared, tmp_path):
    output, _, _ = prepared
    with image_prep.opened(output, readonly=False) as g:
        image_prep._mount_os(g, output)
        assert g.read_file(image_prep.AGENT_PATH) == AGENT.read_bytes()
        assert g.statns(image_prep.AGENT_PATH)["st_mode"] & 0o777 == 0o755
        unit = g.cat(image_prep.UNIT_PATH)
        assert f"ExecStart={image_prep.AGENT_PATH} --device {image_prep.PORT}" in unit
        assert g.readlink(image_prep.WANTS_LINK) == image_prep.UNIT_PATH
        # What a run would leave: the agent's log and a journal file.
        g.write(image_prep.AGENT_LOG, '{"event": "started"}\n')
        g.mkdir_p("/var/log/journal/0123")
        g.write("/var/log/journal/0123/system.journal", "journal bytes")
    copied = image_prep.read_logs(output, tmp_path / "logs")
    assert copied == [image_prep.AGENT_LOG, "/var/log/journal"]
    assert (tmp_path / "logs" / "vnetct-guest-agent.log").read_text() == '{"event": "started"}\n'
    assert (tmp_path / "logs" / "journal" / "journal" / "0123" / "system.journal").read_text() == "journal bytes"


def test_preparing_twice_changes_nothing(prepared):
    output, _, _ = prepared
    again = image_prep.prepare(output, "iavf", AGENT)
    assert again["changed"] == []


def test_a_missing_vf_driver_names_the_kernel_and_the_module(base_image, tmp_path):
    image, version = base_image
    with pytest.raises(image_prep.ImagePrepError) as refused:
        image_prep.prepare(image, "mlx5_core", AGENT, tmp_path / "copy.qcow2")
    assert f"kernel {version} lacks mlx5_core" in str(refused.value)


def test_not_a_disk_image_is_a_clear_error(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    junk = tmp_path / "notes.txt"
    junk.write_text("not a disk\n" * 100)
    with pytest.raises(image_prep.ImagePrepError) as refused:
        image_prep.prepare(junk, "iavf", AGENT, tmp_path / "out.qcow2")
    assert "no operating system found" in str(refused.value)
    with pytest.raises(image_prep.ImagePrepError) as missing:
        image_prep.prepare(tmp_path / "absent.qcow2", "iavf", AGENT, tmp_path / "out2.qcow2")
    assert "absent.qcow2: no such file" in str(missing.value)
