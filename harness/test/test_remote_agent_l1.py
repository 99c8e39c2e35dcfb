"""The host agent daemon where it is meant to run: inside an L1 guest (TCG,
the nested kernel), on a virtio-serial port whose QEMU chardev is a unix
socket on L0. hello, spawn (a QEMU in L1 with its QMP on a unix socket
there), a relay to that socket through which the harness's own QMP client
talks to it, read_file and write_file; and the figures (tmp_path/figures.json,
printed): L1 launch to the daemon's hello; the stream's round trip (hello) and
its throughput each way (1 MiB by write_file, read_file); the relay's round
trip (a QMP command through the harness's QMP client) and its throughput both
ways (QMP echoes a 192 KiB command id); each the median of 3."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Tuple

import pytest

from remote_agent_support import agent_binary
from vnetct.core import paths
from vnetct.remote.client import RemoteAgentClient, RemoteClosed, RemoteTimeout
from vnetct.remote.relay import LocalRelay
from vnetct.setup import nested_kernel

sys.path.insert(0, str(paths.REPO / "guest_agent" / "image"))
from cpio_newc import dir_entry, file_entry, symlink_entry, write_newc  # noqa: E402
from initramfs_content import check_busybox, strip_agent  # noqa: E402
from vnetct.nested.l1 import library_closure  # noqa: E402

PORT = "org.vnetct.host-agent"
MAC = "52:54:00:6f:55:cc"
APPLETS = ("sh", "mount", "mkdir", "ln", "echo", "poweroff", "cat")  # cat: also a streamed output
L1_INIT = r"""#!/bin/sh
export PATH=/bin:/usr/bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs dev /dev
ln -s /proc/self/fd /dev/fd
echo "L1: uptime $(cat /proc/uptime): starting vnetct-host-agent"
/usr/bin/vnetct-host-agent --port {port}
echo "L1: vnetct-host-agent exited with status $?"
poweroff -f
"""
FAILURE_MARKS = ("Kernel panic", "vnetct-host-agent exited", "can't run")


def l1_initramfs(out: Path, daemon_port: str = PORT) -> Path:
    """busybox, the stripped daemon, /init, and QEMU with its libraries (a QMP socket in L1 to relay to)."""
    qemu = str(paths.DEFAULT_QEMU)
    entries = [dir_entry(d) for d in ("bin", "usr", "usr/bin", "proc", "sys", "dev", "run", "tmp")]
    entries.append(file_entry("bin/busybox", check_busybox(), 0o755))
    entries += [symlink_entry(f"bin/{applet}", "busybox") for applet in APPLETS]
    agent, _ = strip_agent(agent_binary().read_bytes(), print)
    entries.append(file_entry("usr/bin/vnetct-host-agent", agent, 0o755))
    entries.append(file_entry("usr/bin/qemu-system-x86_64", Path(qemu).read_bytes(), 0o755))
    entries.append(file_entry("usr/bin/ip", Path("/usr/bin/ip").read_bytes(), 0o755))  # iproute2: VF settings (-j)
    for lib in sorted(set(library_closure(qemu)) | set(library_closure("/usr/bin/ip"))):
        parts = Path(lib).parent.parts[1:]
        entries += [dir_entry("/".join(parts[:i])) for i in range(1, len(parts) + 1)]
        entries.append(file_entry(lib.lstrip("/"), Path(lib).resolve().read_bytes(), 0o755))
    entries.append(file_entry("init", L1_INIT.replace("{port}", daemon_port).encode(), 0o755))
    unique, seen = [], set()
    for entry in entries:
        if entry.path not in seen:
            seen.add(entry.path)
            unique.append(entry)
    path = out / "l1-initramfs.cpio"
    path.write_bytes(write_newc(unique))
    return path


def l1_argv(kernel: Path, initrd: Path, chardev: Path, console: Path) -> list:
    return [str(paths.DEFAULT_QEMU), "-machine", "q35,kernel-irqchip=split", "-accel", "tcg", "-cpu", "max",
            "-m", "384", "-smp", "1", "-nodefaults", "-display", "none", "-no-reboot",
            "-device", "intel-iommu,caching-mode=on,intremap=on",
            "-device", "pcie-root-port,id=root1,chassis=1,slot=1",
            "-netdev", "hubport,id=pfnet,hubid=0", "-device", "igb,netdev=pfnet,bus=root1,id=pf0",
            "-kernel", str(kernel), "-initrd", str(initrd),
            "-append", "console=ttyS0 panic=-1 rdinit=/init intel_iommu=on loglevel=4", "-serial", f"file:{console}",
            "-device", "virtio-serial-pci,id=ports",
            "-chardev", f"socket,id=hostagent,path={chardev},server=on,wait=off",
            "-device", f"virtserialport,chardev=hostagent,name={PORT}"]


def wait_hello(client: RemoteAgentClient, l1: subprocess.Popen, console: Path, timeout: float) -> dict:
    """The daemon's greeting, watching L1's console for a failure and L1 for its exit meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.wait_event("hello", timeout=min(1.0, max(deadline - time.monotonic(), 0.01)))
        except (RemoteTimeout, RemoteClosed) as error:
            if isinstance(error, RemoteClosed):
                try:  # the stream closes when L1's QEMU ends: let it end, then say why from the console
                    l1.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    raise AssertionError(f"the stream closed and L1 did not end: {error}") from None
            text = console.read_text(errors="replace") if console.exists() else ""
            failed = next((mark for mark in FAILURE_MARKS if mark in text), None)
            if failed or l1.poll() is not None or time.monotonic() >= deadline:
                why = f"'{failed}' on L1's console" if failed else \
                    f"L1 exited ({l1.returncode})" if l1.returncode is not None else f"no hello within {timeout:.0f} s"
                raise AssertionError(f"{why}; console ends: {text[-1500:]}") from None


@pytest.fixture
def nested_bzimage() -> Path:
    kernel = nested_kernel.cached()
    if kernel is None:
        pytest.skip("the nested kernel is not built for the installed linux-source-6.12 and this fragment "
                    "(/usr/bin/python3 -m vnetct.setup.nested_kernel builds it)")
    return kernel.bzimage


@contextlib.contextmanager
def l1_with_agent(out: Path, bzimage: Path, daemon_port: str = PORT) -> Iterator[Tuple[RemoteAgentClient, dict]]:
    """L1 booted, the client connected to its port's chardev and the daemon's greeting received (raising
    AssertionError naming a failure on L1's console meanwhile); L1 killed at the end."""
    initrd = l1_initramfs(out, daemon_port)
    chardev, console = out / "l1-hostagent.sock", out / "l1-console.log"
    launched = time.monotonic()
    with open(out / "l1.stdout", "w") as l1_output:
        l1 = subprocess.Popen(l1_argv(bzimage, initrd, chardev, console), stdin=subprocess.DEVNULL,
                              stdout=l1_output, stderr=subprocess.STDOUT, process_group=0)
    client = None
    try:
        client = RemoteAgentClient.connect(chardev, timeout=30, transcript=out / "remote.jsonl")
        greeting = wait_hello(client, l1, console, timeout=180)
        yield client, {"launch_to_hello_s": time.monotonic() - launched, "greeting": greeting}
    finally:
        if client is not None:
            client.close()
        if l1.poll() is None:
            os.killpg(l1.pid, signal.SIGKILL)
        l1.wait()


@pytest.mark.heavy("boots an L1 guest under TCG with the nested kernel and a daemon looking for a wrong port")
def test_a_daemon_that_dies_in_l1_fails_the_wait_for_its_hello_naming_it(tmp_path, nested_bzimage):
    """Seeded fault: the daemon is told a port name QEMU does not give; it exits, and the wait says so."""
    with pytest.raises(AssertionError, match="(?s)'vnetct-host-agent exited' on L1's console.*org.vnetct.wrong"):
        with l1_with_agent(tmp_path, nested_bzimage, daemon_port="org.vnetct.wrong"):
            pass


@pytest.mark.heavy("boots an L1 guest under TCG with the nested kernel and the host agent daemon")
def test_the_host_agent_in_l1_answers_spawns_and_relays_over_virtio_serial(tmp_path, nested_bzimage):
    from vnetct.core.native import vnetct_native
    figures: dict = {}
    with l1_with_agent(tmp_path, nested_bzimage) as (client, boot):
        greeting = boot["greeting"]
        figures["l1_launch_to_hello_s"] = round(boot["launch_to_hello_s"], 2)
        figures["l1_uptime_at_hello_s"] = round(greeting["uptime_s"], 2)  # L1's clock (TCG: slower than ours)
        hello = client.hello(timeout=30)
        assert greeting["kernel"] == hello["kernel"] and hello["kernel"].startswith("6.12"), hello
        assert [pf["driver"] for pf in hello["pfs"]] == ["igb"], hello["pfs"]
        pf = hello["pfs"][0]

        assert b"Linux version 6.12" in client.read_file("/proc/version", timeout=30)
        # the stream itself, without a relay: a request's round trip, and 1 MiB each way (write_file, read_file)
        hello_round_trips, writes, reads, channels = [], [], [], []
        for _ in range(3):
            times = []
            for _ in range(10):
                before = time.monotonic()
                client.hello(timeout=30)
                times.append(time.monotonic() - before)
            hello_round_trips.append(statistics.median(times))
            payload = os.urandom(1 << 20)
            before = time.monotonic()
            client.write_file("/tmp/blob", payload, timeout=120)
            writes.append(len(payload) / (time.monotonic() - before))
            before = time.monotonic()
            assert client.read_file("/tmp/blob", timeout=120) == payload
            reads.append(len(payload) / (time.monotonic() - before))
            # a channel (the relays' windows and frames), fed by a pipe: cat's output streamed
            before = time.monotonic()
            streamed = client.spawn(["cat", "/tmp/blob"], stdout="stream")["stdout"].read_all(timeout=120)
            channels.append(len(streamed) / (time.monotonic() - before))
            assert streamed == payload
        figures["stream_round_trip_ms"] = [round(t * 1000, 1) for t in hello_round_trips]
        figures["stream_round_trip_ms_median"] = round(statistics.median(hello_round_trips) * 1000, 1)
        figures["write_file_l0_to_l1_kib_s"] = [round(t / 1024, 1) for t in writes]
        figures["write_file_l0_to_l1_kib_s_median"] = round(statistics.median(writes) / 1024, 1)
        figures["read_file_l1_to_l0_kib_s"] = [round(t / 1024, 1) for t in reads]
        figures["read_file_l1_to_l0_kib_s_median"] = round(statistics.median(reads) / 1024, 1)
        figures["channel_l1_to_l0_kib_s"] = [round(t / 1024, 1) for t in channels]
        figures["channel_l1_to_l0_kib_s_median"] = round(statistics.median(channels) / 1024, 1)

        # the vf profile's SR-IOV set-up, by the SR-IOV library in L1, on the emulated igb PF, and put back
        probe = client.sriov_probe(pf["netdev"])
        assert (probe["total_vfs"], probe["num_vfs"], probe["vfio_pci_loaded"]) == (7, 0, True), probe
        started = time.monotonic()
        vfs = client.sriov_prepare({"pf": pf["netdev"], "num_vfs": 2, "bind_vfio": True,
                                    "vfs": [{"index": 1, "mac": MAC, "vlan": 10, "trust": True, "spoofchk": False}]},
                                   "/run/sriov-journal.json")
        figures["sriov_prepare_s"] = round(time.monotonic() - started, 2)
        assert [(vf["index"], vf["driver"]) for vf in vfs] == [(1, "vfio-pci")], vfs
        assert client.read_file(f"/sys/bus/pci/devices/{vfs[0]['address']}/driver_override").strip() == b"vfio-pci"
        shown = client.spawn(["ip", "-j", "-d", "link", "show", "dev", pf["netdev"]], stdout="stream")
        vf_info = json.loads(shown["stdout"].read_all(timeout=60))[0]["vfinfo_list"][1]  # what the PF reports
        assert (vf_info["address"], vf_info["vlan_list"][0]["vlan"], vf_info["trust"], vf_info["spoofchk"]) == \
            (MAC, 10, True, False), vf_info
        started = time.monotonic()
        restored = client.sriov_restore("/run/sriov-journal.json")
        figures["sriov_restore_s"] = round(time.monotonic() - started, 2)
        assert (restored["failures"], restored["left"]) == ([], 0), restored
        figures["sriov_restored"] = restored["undone"]
        assert client.sriov_probe(pf["netdev"])["num_vfs"] == 0

        started = time.monotonic()
        # -S: a QEMU that starts running sends RESUME, and a client connecting while it starts may get that
        # event before the greeting (seen here twice with QEMU 10.0.2, which the QMP client rightly refuses)
        qemu = client.spawn(["/usr/bin/qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none",
                             "-S", "-qmp", "unix:/run/qmp.sock,server=on,wait=off"], stderr="/tmp/qemu.stderr")
        with LocalRelay(client, "/run/qmp.sock", tmp_path / "l0-qmp.sock", timeout=120) as relay:
            figures["l1_qemu_start_to_relay_s"] = round(time.monotonic() - started, 2)
            qmp = vnetct_native.QmpClient.connect(str(relay.path), str(tmp_path / "qmp-l1.jsonl"), 60.0)
            version = qmp.execute("query-version", None, 30.0)
            assert version["qemu"]["major"] >= 10, version
            round_trips = []
            for _ in range(3):
                times = []
                for _ in range(10):
                    before = time.monotonic()
                    assert qmp.execute("query-status", None, 30.0)["status"] == "prelaunch"
                    times.append(time.monotonic() - before)
                round_trips.append(statistics.median(times))
            figures["relay_round_trip_ms"] = [round(t * 1000, 1) for t in round_trips]
            figures["relay_round_trip_ms_median"] = round(statistics.median(round_trips) * 1000, 1)
            del qmp  # closes its connection: QEMU takes the next one
            assert relay.error is None, relay.error
        # throughput both ways: QMP echoes a command's "id", so 256 KiB up and the same 256 KiB back
        with LocalRelay(client, "/run/qmp.sock", tmp_path / "l0-qmp-raw.sock", timeout=60) as relay, \
                socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
            raw.settimeout(120)
            raw.connect(str(relay.path))
            lines = raw.makefile("rb")
            assert "QMP" in json.loads(lines.readline())
            raw.sendall(b'{"execute": "qmp_capabilities"}\n')
            assert json.loads(lines.readline()) == {"return": {}}
            rates = []
            for round_number in range(3):
                marker = os.urandom(96 * 1024).hex() + f"-{round_number}"  # 192 KiB of text
                before = time.monotonic()
                raw.sendall(json.dumps({"execute": "query-version", "id": marker}).encode() + b"\n")
                reply = json.loads(lines.readline())
                elapsed = time.monotonic() - before
                assert reply.get("id") == marker, f"the id came back changed ({len(str(reply.get('id')))} chars)"
                rates.append(2 * len(marker) / elapsed)
            figures["relay_echo_bytes_each_way"] = len(marker)
            figures["relay_both_ways_kib_s"] = [round(rate / 1024, 1) for rate in rates]
            figures["relay_both_ways_kib_s_median"] = round(statistics.median(rates) / 1024, 1)
            raw.sendall(b'{"execute": "quit"}\n')
            replies = [json.loads(line) for line in lines]  # until QEMU closes: its SHUTDOWN event and the return
            assert {"return": {}} in replies, replies
            assert relay.error is None, relay.error
        assert client.wait(qemu["process"], timeout=60)["code"] == 0
        (tmp_path / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
        print("remote agent in L1:", json.dumps(figures))
