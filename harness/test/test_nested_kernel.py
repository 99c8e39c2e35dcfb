"""The nested path's kernel (vnetct.setup.nested_kernel, issue 18): the
committed config fragment names every option the path needs, all built in;
the cache key follows the package version and the fragment; a cached kernel
is not rebuilt; an option Kconfig drops fails the build naming it. The heavy
test reads the built kernel's configuration (it builds nothing: without a
cached kernel it is skipped)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vnetct.setup import nested_kernel
from vnetct.setup.nested_kernel import NestedKernelError, cache_key, missing_options, parse_config

# What issue 18's nested path needs, by what needs it; the fragment must name each, =y.
NEEDED = {
    "the machine and its console": ["64BIT", "SMP", "PRINTK", "PRINTK_TIME", "SERIAL_8250", "SERIAL_8250_CONSOLE"],
    "the initramfs and its userland": ["BLK_DEV_INITRD", "RD_ZSTD", "BINFMT_ELF", "BINFMT_SCRIPT", "DEVTMPFS",
                                       "PROC_FS", "SYSFS", "FUTEX", "EPOLL", "EVENTFD"],
    "networking": ["NET", "UNIX", "INET"],
    "PCI, PCIe, ACPI, SR-IOV, hotplug": ["ACPI", "PCI", "PCI_MSI", "PCI_MMCONFIG", "PCIEPORTBUS", "PCI_IOV",
                                         "HOTPLUG_PCI", "HOTPLUG_PCI_PCIE", "HOTPLUG_PCI_ACPI"],
    "virtio and failover": ["VIRTIO_PCI", "VIRTIO_CONSOLE", "VIRTIO_NET", "FAILOVER", "NET_FAILOVER"],
    "the igb PF and its VF": ["IGB", "IGBVF"],
    "L1 gives the VF to L2": ["IOMMU_SUPPORT", "INTEL_IOMMU", "IRQ_REMAP", "VFIO", "VFIO_PCI"],
}


def fragment() -> dict:
    return parse_config(nested_kernel.FRAGMENT.read_text())


def test_the_fragment_names_every_option_the_path_needs_built_in():
    options = fragment()
    missing = [f"CONFIG_{name} ({why})" for why, names in NEEDED.items() for name in names
               if options.get(f"CONFIG_{name}") != "y"]
    assert not missing, f"{nested_kernel.FRAGMENT} lacks (=y): {missing}"
    assert not [name for name, value in options.items() if value == "m"], "modules in the fragment"
    assert options.get("CONFIG_MODULES", "n") == "n"


def test_parse_config_reads_set_unset_and_string_options():
    text = 'CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C="x y"\nCONFIG_D=100\n# a comment\n'
    assert parse_config(text) == {"CONFIG_A": "y", "CONFIG_B": "n", "CONFIG_C": '"x y"', "CONFIG_D": "100"}


def test_missing_options_names_what_kconfig_dropped():
    asked = {"CONFIG_IGBVF": "y", "CONFIG_VFIO": "y"}
    assert missing_options(asked, {"CONFIG_IGBVF": "y", "CONFIG_VFIO": "y"}) == []
    assert missing_options(asked, {"CONFIG_IGBVF": "y"}) == ["CONFIG_VFIO=y (got n)"]
    assert missing_options(asked, {"CONFIG_IGBVF": "m", "CONFIG_VFIO": "y"}) == ["CONFIG_IGBVF=y (got m)"]


def test_the_cache_key_follows_the_version_and_the_fragment():
    text = nested_kernel.FRAGMENT.read_bytes()
    key = cache_key("6.12.118-1~deb12u1", text)
    assert key == cache_key("6.12.118-1~deb12u1", text)
    assert key.startswith("6.12.118-1_deb12u1-") and "/" not in key
    assert cache_key("6.12.119-1~deb12u1", text) != key
    assert cache_key("6.12.118-1~deb12u1", text + b"CONFIG_IPV6=y\n") != key
    assert cache_key("6.12.118-1~deb12u1", text.replace(b"CONFIG_IGBVF=y\n", b"")) != key


@pytest.fixture
def fake_build(tmp_path, monkeypatch):
    """ensure_kernel with no apt and no make: the package is 'installed', make writes `config_text` as .config
    and a bzImage; the calls are recorded."""
    tarball = tmp_path / "linux-source.tar.xz"
    tarball.write_bytes(b"")
    monkeypatch.setattr(nested_kernel, "SOURCE_TARBALL", tarball)
    monkeypatch.setattr(nested_kernel.bootstrap, "ensure_extra_packages", lambda packages: None)
    monkeypatch.setattr(nested_kernel, "package_version", lambda: "6.12.118-1~deb12u1")
    state = {"calls": [], "config_text": nested_kernel.FRAGMENT.read_text()}

    def run(step, argv, log_path, cwd=None):
        state["calls"].append(step)
        if step == "unpacking the source":
            (Path(argv[argv.index("-C") + 1]) / "linux-source-6.12").mkdir()
            (Path(argv[argv.index("-C") + 1]) / "linux-source-6.12" / "Makefile").write_text("")
            return
        objects = Path(next(arg[2:] for arg in argv if arg.startswith("O=")))
        if step == "configuring":
            (objects / ".config").write_text(state["config_text"])
        else:
            (objects / "arch" / "x86" / "boot").mkdir(parents=True, exist_ok=True)
            (objects / "arch" / "x86" / "boot" / "bzImage").write_bytes(b"kernel")

    monkeypatch.setattr(nested_kernel, "_run", run)
    state["cache"] = tmp_path / "cache"
    return state


def test_a_kernel_is_built_once_then_taken_from_the_cache(fake_build):
    first = nested_kernel.ensure_kernel(cache_dir=fake_build["cache"], log=lambda text: None)
    assert first.rebuilt and first.bzimage.read_bytes() == b"kernel"
    assert fake_build["calls"] == ["unpacking the source", "configuring", "building bzImage"]
    meta = json.loads((first.bzimage.parent / nested_kernel.BUILD_JSON).read_text())
    assert meta["package_version"] == "6.12.118-1~deb12u1" and meta["bzimage_bytes"] == len(b"kernel")
    assert [p.name for p in fake_build["cache"].glob("build-*")] == ["build-6.12.118-1_deb12u1"], "objects kept"
    said = []
    second = nested_kernel.ensure_kernel(cache_dir=fake_build["cache"], log=said.append)
    assert not second.rebuilt and second.bzimage == first.bzimage
    assert fake_build["calls"] == ["unpacking the source", "configuring", "building bzImage"]
    assert said and said[0].startswith("nested kernel: up to date")


def test_an_altered_cached_kernel_is_rebuilt(fake_build):
    first = nested_kernel.ensure_kernel(cache_dir=fake_build["cache"], log=lambda text: None)
    first.bzimage.write_bytes(b"truncated")
    again = nested_kernel.ensure_kernel(cache_dir=fake_build["cache"], log=lambda text: None)
    assert again.rebuilt and again.bzimage.read_bytes() == b"kernel"
    assert fake_build["calls"].count("unpacking the source") == 1, "the source is unpacked once"


def test_an_option_kconfig_drops_fails_the_build_naming_it(fake_build):
    fake_build["config_text"] = nested_kernel.FRAGMENT.read_text().replace("CONFIG_IGBVF=y\n",
                                                                           "# CONFIG_IGBVF is not set\n")
    with pytest.raises(NestedKernelError, match=r"dropped options .*: CONFIG_IGBVF=y \(got n\)$"):
        nested_kernel.ensure_kernel(cache_dir=fake_build["cache"], log=lambda text: None)
    assert fake_build["calls"] == ["unpacking the source", "configuring"], "no bzImage built"
    assert nested_kernel.cached(cache_dir=fake_build["cache"]) is None


@pytest.mark.heavy("reads the built nested kernel's configuration (skipped when it is not built)")
def test_the_built_kernel_has_every_option_of_the_fragment():
    kernel = nested_kernel.cached()
    if kernel is None:
        pytest.skip("the nested kernel is not built for the installed linux-source-6.12 and this fragment "
                    "(/usr/bin/python3 -m vnetct.setup.nested_kernel builds it)")
    built = parse_config(kernel.config.read_text())
    assert missing_options(fragment(), built) == []
    assert built.get("CONFIG_MODULES", "n") == "n", "a kernel with module support"
    assert not [name for name, value in built.items() if value == "m"]
    assert kernel.bzimage.stat().st_size > 1_000_000
