"""Unit tests for the guest image builder (no network, no kernel download).

Run: /usr/bin/python3 -m pytest guest_agent/image/test_build_image.py
"""

import gzip
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_image as bi  # noqa: E402
import cpio_newc as cpio  # noqa: E402
import initramfs_content as content  # noqa: E402
import kernel_modules as km  # noqa: E402


def sample_entries():
    return [
        cpio.dir_entry("bin"),
        cpio.file_entry("bin/busybox", b"\x7fELF fake busybox", 0o755),
        cpio.symlink_entry("bin/sh", "busybox"),
        cpio.file_entry("init", b"#!/bin/sh\necho hi\n", 0o755),
        cpio.file_entry("lib/modules/vnetct/virtio_net.ko", b"x" * 1001),  # odd size: padding
        cpio.file_entry("empty", b""),
        cpio.chardev_entry("dev/console", 5, 1),
    ]


# ---------------------------------------------------------------- cpio writer

def test_newc_roundtrip_parse_back():
    blob = cpio.write_newc(sample_entries())
    assert len(blob) % 512 == 0
    got = {path: (mode, data) for path, mode, data in cpio.read_newc(blob)}
    # parents were added automatically
    for d in ("lib", "lib/modules", "lib/modules/vnetct", "dev", "bin"):
        assert got[d][0] & 0o170000 == cpio.S_IFDIR
    assert got["bin/busybox"] == (cpio.S_IFREG | 0o755, b"\x7fELF fake busybox")
    assert got["bin/sh"] == (cpio.S_IFLNK | 0o777, b"busybox")
    assert got["lib/modules/vnetct/virtio_net.ko"][1] == b"x" * 1001
    assert got["empty"] == (cpio.S_IFREG | 0o644, b"")
    assert got["dev/console"][0] == cpio.S_IFCHR | 0o600
    # sorted, parents before children
    paths = [p for p, _, _ in cpio.read_newc(blob)]
    assert paths == sorted(paths)


def test_newc_is_deterministic_regardless_of_input_order():
    a = cpio.write_newc(sample_entries())
    b = cpio.write_newc(list(reversed(sample_entries())))
    assert a == b


def test_newc_rejects_duplicates_and_bad_paths():
    with pytest.raises(ValueError):
        cpio.write_newc([cpio.file_entry("a", b"1"), cpio.file_entry("a", b"2")])
    with pytest.raises(ValueError):
        cpio.file_entry("../etc/passwd", b"")
    with pytest.raises(ValueError):
        cpio.write_newc([cpio.file_entry("a", b"1"), cpio.file_entry("a/b", b"2")])


@pytest.mark.skipif(shutil.which("cpio") is None, reason="cpio(1) not installed")
def test_newc_roundtrip_through_cpio_command(tmp_path):
    blob = cpio.write_newc(sample_entries())
    listing = subprocess.run(["cpio", "-it", "--quiet"], input=blob,
                             capture_output=True, check=True).stdout.decode().split()
    assert "bin/busybox" in listing and "dev/console" in listing
    assert "lib/modules/vnetct/virtio_net.ko" in listing
    # extract the regular files and compare their contents
    subprocess.run(["cpio", "-id", "--quiet", "--no-absolute-filenames",
                    "init", "lib/modules/vnetct/virtio_net.ko", "bin/sh"],
                   input=blob, cwd=tmp_path, check=True)
    assert (tmp_path / "init").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert (tmp_path / "lib/modules/vnetct/virtio_net.ko").read_bytes() == b"x" * 1001
    assert (tmp_path / "bin/sh").is_symlink()
    assert str((tmp_path / "bin/sh").readlink()) == "busybox"


def test_gzip_compression_is_deterministic():
    blob = cpio.write_newc(sample_entries())
    z1 = content.compress(blob, "gzip")
    z2 = content.compress(blob, "gzip")
    assert z1 == z2 and gzip.decompress(z1) == blob


def test_initramfs_layout():
    mods = {"failover": b"m1", "virtio_net": b"m2"}
    blob = cpio.write_newc(content.initramfs_entries(b"BB", b"#!/bin/sh\n", mods))
    got = {p: (m, d) for p, m, d in cpio.read_newc(blob)}
    assert got["usr/bin/vnetct-guest-agent"] == (cpio.S_IFREG | 0o755, b"#!/bin/sh\n")
    assert got["lib/modules/vnetct/failover.ko"][1] == b"m1"
    assert got["lib/modules/vnetct/modules.order"][1] == b"failover\nvirtio_net\n"
    for applet in ("sh", "mount", "mknod", "ip", "cat", "ls", "insmod", "dmesg",
                   "sleep", "poweroff"):
        assert got[f"bin/{applet}"] == (cpio.S_IFLNK | 0o777, b"busybox")
    init = got["init"][1].decode()
    assert "vnetct-init: starting agent" in init
    assert "/usr/bin/vnetct-guest-agent" in init
    assert "poweroff -f" in init
    assert "insmod" not in init  # the agent loads modules, not /init


# ---------------------------------------------------------------- cache digest

BASE_INPUTS = {
    "kernel_package": "k", "busybox": "b", "agent": "a", "init": "i",
    "builder": "s", "module:virtio_net": "v",
}


def test_digest_is_stable_and_order_independent():
    d1 = bi.inputs_digest(BASE_INPUTS)
    d2 = bi.inputs_digest(dict(reversed(list(BASE_INPUTS.items()))))
    assert d1 == d2 and len(d1) == 64


@pytest.mark.parametrize("name", sorted(BASE_INPUTS))
def test_changing_any_input_changes_digest(name):
    changed = dict(BASE_INPUTS, **{name: BASE_INPUTS[name] + "!"})
    assert bi.inputs_digest(changed) != bi.inputs_digest(BASE_INPUTS)
    assert bi.changed_inputs(BASE_INPUTS, changed) == [name]


def test_adding_an_input_changes_digest():
    more = dict(BASE_INPUTS, **{"module:igb": "g"})
    assert bi.inputs_digest(more) != bi.inputs_digest(BASE_INPUTS)
    assert bi.changed_inputs(BASE_INPUTS, more) == ["module:igb"]


def test_digest_names_are_not_ambiguous():
    # name/value boundaries must not be shiftable
    assert bi.inputs_digest({"ab": "c"}) != bi.inputs_digest({"a": "bc"})


# ---------------------------------------------------------------- builder modules

HERE = Path(__file__).resolve().parent
BUILDER_FILES = sorted(p.name for p in HERE.glob("*.py") if not p.name.startswith("test_"))


def test_every_builder_module_is_a_digest_input():
    assert sorted(bi.builder_sources()) == BUILDER_FILES
    assert sorted(bi.builder_inputs()) == [f"builder:{n}" for n in BUILDER_FILES]


def test_one_build_error_class():
    # raised by every module, caught by build_image's callers as build_image.BuildError
    assert bi.BuildError is km.BuildError is content.BuildError


def _builder_inputs_of(folder: Path) -> dict:
    # imported the way the harness does it: folder on sys.path, `import build_image`
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import build_image; "
            "sys.path.pop(0); print(json.dumps(build_image.builder_inputs()))")
    out = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)


@pytest.mark.parametrize("name", BUILDER_FILES)
def test_editing_any_builder_module_changes_the_digest(tmp_path, name):
    for f in BUILDER_FILES:
        shutil.copyfile(HERE / f, tmp_path / f)
    before = _builder_inputs_of(tmp_path)
    with open(tmp_path / name, "a") as f:
        f.write("# edited\n")
    after = _builder_inputs_of(tmp_path)
    assert bi.changed_inputs(before, after) == [f"builder:{name}"]
    assert bi.inputs_digest(before) != bi.inputs_digest(after)


def test_runs_as_a_script():
    p = subprocess.run([sys.executable, str(HERE / "build_image.py"), "--help"],
                       capture_output=True, text=True)
    assert p.returncode == 0 and "--cache" in p.stdout, p.stderr


# ---------------------------------------------------------------- modinfo

def test_depends_from_raw_blob():
    blob = (b"junk\0license=GPL\0depends=dca,i2c-algo-bit\0"
            b"name=igb\0vermagic=6.12 SMP\0more junk")
    assert km.modinfo_depends(blob) == ["dca", "i2c_algo_bit"]
    assert km.parse_modinfo(blob)["name"] == ["igb"]


def test_empty_depends():
    assert km.modinfo_depends(b"\0depends=\0name=failover\0") == []
    assert km.modinfo_depends(b"no modinfo here") == []


def _elf_with_sections(sections):
    """A minimal ELF64 LE relocatable object with the given (name, bytes) sections."""
    shstr = b"\0" + b"".join(n.encode() + b"\0" for n, _ in sections) + b".shstrtab\0"
    body = bytearray(b"\0" * 64)
    offsets = []
    for _, data in sections:
        offsets.append(len(body))
        body += data
    shstr_off = len(body)
    body += shstr
    while len(body) % 8:
        body += b"\0"
    shoff = len(body)
    name_off = 1
    headers = [b"\0" * 64]
    for (n, data), off in zip(sections, offsets):
        headers.append(struct.pack("<IIQQQQIIQQ", name_off, 1, 0, 0, off, len(data),
                                   0, 0, 1, 0))
        name_off += len(n) + 1
    headers.append(struct.pack("<IIQQQQIIQQ", name_off, 3, 0, 0, shstr_off, len(shstr),
                               0, 0, 1, 0))
    body += b"".join(headers)
    ident = b"\x7fELF\x02\x01\x01" + b"\0" * 9
    hdr = ident + struct.pack("<HHIQQQIHHHHHH", 1, 62, 1, 0, 0, shoff, 0, 64, 0, 0,
                              64, len(headers), len(headers) - 1)
    body[:64] = hdr
    return bytes(body)


def test_depends_from_elf_modinfo_section_only():
    elf = _elf_with_sections([
        (".text", b"\0depends=decoy\0"),  # must be ignored: not .modinfo
        (".modinfo", b"license=GPL\0depends=failover\0name=net_failover\0"),
    ])
    assert km.modinfo_depends(elf) == ["failover"]


def test_module_order_check():
    order = ("failover", "net_failover", "virtio_net")
    km.check_module_order({"net_failover": ["failover"], "virtio_net": ["net_failover"]},
                          order)
    with pytest.raises(bi.BuildError, match="ptp, which is not in"):
        km.check_module_order({"virtio_net": ["ptp"]}, order)
    with pytest.raises(bi.BuildError, match="loaded after it"):
        km.check_module_order({"failover": ["virtio_net"]}, order)


# ---------------------------------------------------------------- input checks

def test_agent_checks(tmp_path):
    script = tmp_path / "agent.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    assert content.check_agent(script).startswith(b"#!/bin/sh")
    bash = tmp_path / "agent.bash"
    bash.write_text("#!/bin/bash\n")
    with pytest.raises(bi.BuildError, match="/bin/bash"):
        content.check_agent(bash)
    with pytest.raises(bi.BuildError, match="not found"):
        content.check_agent(tmp_path / "missing")
    # a dynamically linked ELF (python itself) is refused
    with pytest.raises(bi.BuildError, match="dynamically linked"):
        content.check_agent(Path(sys.executable).resolve())


def test_busybox_missing_names_package(tmp_path):
    with pytest.raises(bi.BuildError, match="busybox-static"):
        content.check_busybox(tmp_path / "busybox")


def test_strip_agent_leaves_scripts_alone():
    logs = []
    data, mode = content.strip_agent(b"#!/bin/sh\necho hi\n", logs.append)
    assert data == b"#!/bin/sh\necho hi\n" and mode == "none (script)"


@pytest.mark.skipif(shutil.which("strip") is None, reason="binutils strip not installed")
def test_strip_agent_shrinks_or_keeps_an_elf():
    elf = Path(shutil.which("strip")).resolve().read_bytes()
    data, mode = content.strip_agent(elf, print)
    assert mode == "strip-debug" and data[:4] == b"\x7fELF" and len(data) <= len(elf)
