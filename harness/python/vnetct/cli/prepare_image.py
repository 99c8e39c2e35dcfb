"""Real distribution images (qcow2) for vendors' runs, prepared with
libguestfs (Debian's python3-guestfs): inject the static guest agent and a
systemd unit that starts it on the virtio-serial port, check that every
installed kernel has what failover needs (failover, net_failover,
virtio_net, and the chosen VF driver, as a module or built in), and read the
guest's logs back after a run.

    ./vnetct prepare-image IMAGE.qcow2 --vf-driver iavf [--output OUT.qcow2]

Without --output the image is prepared in place; with it, IMAGE is copied
first and never written. Preparing twice gives the same image. A record of
what was found and changed is printed as JSON (and returned by prepare()).

libguestfs here: its appliance is built by supermin from the host's packages
and needs a kernel; this machine has none installed (a container-like VM),
so the appliance gets the Debian kernel of the guest-image cache, with a
module tree indexed once by depmod under .cache/guestfs-kernel/. Without
usable KVM the appliance runs under TCG (force_tcg): about 20 s a launch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from vnetct.core import paths

AGENT_PATH = "/usr/local/sbin/vnetct-guest-agent"
UNIT_NAME = "vnetct-guest-agent.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT_NAME}"
WANTS_LINK = f"/etc/systemd/system/multi-user.target.wants/{UNIT_NAME}"
AGENT_LOG = "/var/log/vnetct-guest-agent.log"
PORT = "/dev/virtio-ports/org.vnetct.agent"
FAILOVER_MODULES = ("failover", "net_failover", "virtio_net")
UNIT = f"""[Unit]
Description=vnetct guest agent (line-JSON on the virtio-serial port org.vnetct.agent)
After=systemd-udev-settle.service
ConditionPathExists={PORT}

[Service]
ExecStart={AGENT_PATH} --device {PORT}
StandardOutput=append:{AGENT_LOG}
StandardError=append:{AGENT_LOG}
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""


class ImagePrepError(Exception):
    """An image that cannot be prepared; the message names the image and what was expected."""


def _appliance_kernel() -> Dict[str, str]:
    """SUPERMIN_* for the Debian kernel of the guest-image cache, its module
    tree indexed by depmod (once) under .cache/guestfs-kernel/."""
    kernels = sorted(paths.IMAGE_CACHE.glob("kernel-*"))
    if not kernels:
        raise ImagePrepError(f"no kernel package under {paths.IMAGE_CACHE}: run ./vnetct setup first")
    package = kernels[-1]
    version = package.name.removeprefix("kernel-")
    tree = paths.CACHE / "guestfs-kernel" / version
    modules = tree / "lib" / "modules" / version
    if not (modules / "modules.dep").exists():
        if tree.exists():
            shutil.rmtree(tree)
        tree.mkdir(parents=True)
        shutil.copytree(package / "lib", tree / "lib", copy_function=os.link)
        result = subprocess.run(["depmod", "-b", str(tree), version], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ImagePrepError(f"depmod -b {tree} {version}: {result.stderr.strip()}")
    return {"SUPERMIN_KERNEL": str(package / "boot" / f"vmlinuz-{version}"), "SUPERMIN_MODULES": str(modules),
            "SUPERMIN_KERNEL_VERSION": version}


def _environment() -> None:
    if not any(Path("/boot").glob("vmlinuz-*")):
        os.environ.update(_appliance_kernel())
    Path("/lib/modules").mkdir(parents=True, exist_ok=True)  # supermin lstat()s it even when told elsewhere
    os.environ.setdefault("LIBGUESTFS_BACKEND", "direct")
    # The harness's own KVM verdict (a real boot, cached): libguestfs would try a broken KVM and abort.
    from vnetct.setup import accel  # needs the native module, which the CLI builds first: import late
    image = accel.image_paths(json.loads((paths.IMAGE_CACHE / "image.json").read_text()))
    if accel.choose(str(paths.DEFAULT_QEMU), image, paths.CACHE, lambda text: None).name != "kvm":
        os.environ.setdefault("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg")


@contextmanager
def opened(image: Path, readonly: bool) -> Iterator[object]:
    """A launched libguestfs handle on `image` (always shut down and closed)."""
    try:
        import guestfs  # Debian: python3-guestfs
    except ImportError as error:
        raise ImagePrepError("python3-guestfs is not installed (./vnetct setup installs it)") from error
    image = Path(image)
    if not image.is_file():
        raise ImagePrepError(f"{image}: no such file")
    _environment()
    handle = guestfs.GuestFS(python_return_dict=True)
    try:
        handle.set_memsize(512)
        try:
            handle.add_drive_opts(str(image), readonly=1 if readonly else 0)
            handle.launch()
        except RuntimeError as error:
            raise ImagePrepError(f"{image}: libguestfs could not open it: {error}") from error
        yield handle
    finally:
        try:
            handle.shutdown()
        finally:
            handle.close()


def _mount_os(handle, image: Path) -> str:
    roots = handle.inspect_os()
    if not roots:
        raise ImagePrepError(f"{image}: no operating system found (libguestfs inspection: no root filesystem "
                             f"with /etc/os-release or an fstab)")
    if len(roots) > 1:
        raise ImagePrepError(f"{image}: {len(roots)} operating systems ({', '.join(roots)}); expected one")
    root = roots[0]
    mounts = handle.inspect_get_mountpoints(root)
    for mountpoint in sorted(mounts, key=len):
        handle.mount(mounts[mountpoint], mountpoint)
    return root


def _module_state(handle, version: str, name: str) -> Optional[str]:
    """"module" (a .ko file listed in modules.dep), "builtin", or None."""
    base = f"/lib/modules/{version}"
    variants = {name, name.replace("_", "-")}
    if handle.is_file(f"{base}/modules.dep"):
        for line in handle.read_lines(f"{base}/modules.dep"):
            module = line.split(":", 1)[0].rsplit("/", 1)[-1].split(".ko", 1)[0]
            if module in variants:
                return "module"
    if handle.is_file(f"{base}/modules.builtin"):
        for line in handle.read_lines(f"{base}/modules.builtin"):
            if line.rsplit("/", 1)[-1].split(".ko", 1)[0] in variants:
                return "builtin"
    return None


def kernels(handle, image: Path, vf_driver: str) -> List[dict]:
    found = []
    for vmlinuz in sorted(handle.glob_expand("/boot/vmlinuz-*")):
        version = vmlinuz.removeprefix("/boot/vmlinuz-")
        modules = {name: _module_state(handle, version, name) for name in (*FAILOVER_MODULES, vf_driver)}
        found.append({"version": version, "vmlinuz": vmlinuz, "modules": modules,
                      "missing": [name for name, state in modules.items() if state is None]})
    if not found:
        raise ImagePrepError(f"{image}: no kernel (/boot/vmlinuz-*) in the image")
    return found


def prepare(image: Path, vf_driver: str, agent: Path, output: Optional[Path] = None) -> dict:
    """Checks and prepares the image (or a copy of it at `output`); returns the record."""
    image = Path(image)
    agent = Path(agent)
    if not agent.is_file():
        raise ImagePrepError(f"{agent}: the guest agent binary is missing (cmake --build build --target "
                             f"vnetct-guest-agent)")
    target = image
    if output is not None:
        if not image.is_file():
            raise ImagePrepError(f"{image}: no such file")
        shutil.copyfile(image, output)
        target = Path(output)
    with opened(target, readonly=False) as handle:
        root = _mount_os(handle, target)
        record = {"image": str(target), "source": str(image), "os": {
            "type": handle.inspect_get_type(root), "distro": handle.inspect_get_distro(root),
            "version": f"{handle.inspect_get_major_version(root)}.{handle.inspect_get_minor_version(root)}",
            "product": handle.inspect_get_product_name(root)}, "vf_driver": vf_driver}
        record["kernels"] = kernels(handle, target, vf_driver)
        broken = [k for k in record["kernels"] if k["missing"]]
        if broken:
            raise ImagePrepError("; ".join(f"{target}: kernel {k['version']} lacks {', '.join(k['missing'])} "
                                           f"(neither in modules.dep nor in modules.builtin)" for k in broken))
        changed = []
        handle.mkdir_p(str(Path(AGENT_PATH).parent))
        content = agent.read_bytes()
        if not handle.is_file(AGENT_PATH) or handle.read_file(AGENT_PATH) != content:
            handle.upload(str(agent), AGENT_PATH)
            changed.append(AGENT_PATH)
        handle.chmod(0o755, AGENT_PATH)
        if not handle.is_file(UNIT_PATH) or handle.cat(UNIT_PATH) != UNIT:
            handle.write(UNIT_PATH, UNIT)
            changed.append(UNIT_PATH)
        handle.chmod(0o644, UNIT_PATH)
        handle.mkdir_p(str(Path(WANTS_LINK).parent))
        if not handle.is_symlink(WANTS_LINK) or handle.readlink(WANTS_LINK) != UNIT_PATH:
            if handle.exists(WANTS_LINK):
                handle.rm(WANTS_LINK)
            handle.ln_s(UNIT_PATH, WANTS_LINK)
            changed.append(WANTS_LINK)
        handle.sync()
        record["changed"] = changed
        record["agent"] = {"path": AGENT_PATH, "bytes": len(content), "unit": UNIT_PATH, "enabled_by": WANTS_LINK,
                           "log": AGENT_LOG}
    return record


def read_logs(image: Path, destination: Path) -> List[str]:
    """Copies the agent's log and the journal out of the image (read-only)
    into `destination`; returns what was copied."""
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    copied = []
    with opened(image, readonly=True) as handle:
        _mount_os(handle, Path(image))
        if handle.is_file(AGENT_LOG):
            handle.download(AGENT_LOG, str(destination / Path(AGENT_LOG).name))
            copied.append(AGENT_LOG)
        if handle.is_dir("/var/log/journal"):
            journal = destination / "journal"
            journal.mkdir(exist_ok=True)
            handle.copy_out("/var/log/journal", str(journal))
            copied.append("/var/log/journal")
    return copied


def add_parser(commands) -> None:
    prep = commands.add_parser("prepare-image", help="prepare a distribution qcow2 image with libguestfs: the "
                                                     "guest agent and its unit, the failover and VF modules",
                               description=__doc__.split("\n\n")[0])
    prep.add_argument("image", type=Path, metavar="IMAGE.qcow2")
    prep.add_argument("--vf-driver", required=True, metavar="MODULE",
                      help="the guest's driver for the VF (iavf, ixgbevf, igbvf, mlx5_core, bnxt_en, ...)")
    prep.add_argument("--output", type=Path, metavar="OUT.qcow2", help="prepare a copy; IMAGE is not written")
    prep.add_argument("--read-logs", type=Path, metavar="DIR",
                      help="instead: copy the agent's log and the journal out of IMAGE into DIR")


def command_prepare_image(args) -> int:
    try:
        if args.read_logs is not None:
            print(json.dumps({"image": str(args.image), "copied": read_logs(args.image, args.read_logs)}, indent=2))
            return 0
        record = prepare(args.image, args.vf_driver, paths.BUILD / "guest_agent" / "vnetct-guest-agent",
                         args.output)
    except ImagePrepError as error:
        print(f"vnetct: prepare-image: {error}", flush=True)
        return 1
    print(json.dumps(record, indent=2))
    return 0
