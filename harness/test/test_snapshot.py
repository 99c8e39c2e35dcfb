"""Guest snapshots (vnetct.vm.snapshot): the cache key, the cache's bound and
locking, and a real restore (heavy: boots one guest to save it)."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from vnetct.vm import snapshot
from vnetct.core.sweep import make_socket_root
from vnetct.vm.snapshot import SnapshotCache, canonical_argv, cache_key


def _argv(name, sockets, artifacts, tap, mac="52:54:00:00:00:01", kernel_args=""):
    return ["/usr/bin/qemu-system-x86_64", "-name", name, "-S", "-append", f"console=ttyS0 {kernel_args}".strip(),
            "-chardev", f"file,id=console,path={artifacts}/serial-{name}.log",
            "-chardev", f"socket,id=qmp,path={sockets}/qmp.sock,server=on,wait=off",
            "-netdev", f"tap,id=hn0,ifname={tap},script=no,downscript=no,vnet_hdr=on",
            "-device", f"virtio-net-pci,netdev=hn0,id=standby,mac={mac},bus=root1,failover=on"]


def _key(argv, name, sockets, artifacts, taps):
    return cache_key(canonical_argv(argv, name, Path(sockets), Path(artifacts), taps), "sha256:q", "img")


def test_two_vms_of_one_command_line_share_a_key():
    first = _key(_argv("a", "/tmp/s1/a-1", "/out/r1/cases/x/a", "vabc1t0"), "a", "/tmp/s1/a-1",
                 "/out/r1/cases/x/a", ["vabc1t0"])
    second = _key(_argv("b", "/tmp/s2/b-7", "/out/r2/cases/y/b", "vdef9t0"), "b", "/tmp/s2/b-7",
                  "/out/r2/cases/y/b", ["vdef9t0"])
    assert first == second


def test_the_qmp_interposer_socket_is_the_same_key():
    plain = _argv("a", "/tmp/s", "/o", "t0")
    interposed = [word.replace("qmp.sock", "qmp-qemu.sock") for word in plain]
    assert _key(plain, "a", "/tmp/s", "/o", ["t0"]) == _key(interposed, "a", "/tmp/s", "/o", ["t0"])


@pytest.mark.parametrize("change", ["mac", "kernel_args", "qemu", "image", "device"])
def test_anything_the_guest_state_depends_on_changes_the_key(change):
    base = _argv("a", "/tmp/s", "/o", "t0")
    key = _key(base, "a", "/tmp/s", "/o", ["t0"])
    if change == "mac":
        other = _key(_argv("a", "/tmp/s", "/o", "t0", mac="52:54:00:00:00:02"), "a", "/tmp/s", "/o", ["t0"])
    elif change == "kernel_args":
        other = _key(_argv("a", "/tmp/s", "/o", "t0", kernel_args="pci=nomsi"), "a", "/tmp/s", "/o", ["t0"])
    elif change == "qemu":
        other = cache_key(canonical_argv(base, "a", Path("/tmp/s"), Path("/o"), ["t0"]), "sha256:other", "img")
    elif change == "image":
        other = cache_key(canonical_argv(base, "a", Path("/tmp/s"), Path("/o"), ["t0"]), "sha256:q", "img2")
    else:
        other = _key(base + ["-device", "e1000e,netdev=hn1,id=primary"], "a", "/tmp/s", "/o", ["t0"])
    assert other != key


def test_the_tap_placeholder_does_not_touch_other_words():
    words = canonical_argv(["-netdev", "tap,id=t0x,ifname=t0", "-device", "x,id=t0"], "n", Path("/s"), Path("/a"),
                           ["t0"])
    assert words == ["-netdev", "tap,id=t0x,ifname=<tap0>", "-device", "x,id=t0"]


@pytest.mark.parametrize("version,file_uri", [("7.2.11 (Debian 1:7.2+dfsg-7+deb12u16)", False), ("8.1.5", False),
                                              ("8.2.0", True), ("10.0.2 (Debian 1:10.0.2+ds-2)", True),
                                              ("11.1.3", True), ("garbage", False)])
def test_the_uri_is_file_from_qemu_8_2_and_exec_cat_before(version, file_uri):
    path = Path("/c/snap shots/state")
    if file_uri:
        assert snapshot.save_uri(path, version) == snapshot.load_uri(path, version) == f"file:{path}"
    else:
        assert snapshot.save_uri(path, version) == "exec:cat > '/c/snap shots/state'"
        assert snapshot.load_uri(path, version) == "exec:cat '/c/snap shots/state'"


def _store(cache, key, size, tmp_path):
    state = tmp_path / f"{key}.tmp"
    state.write_bytes(b"\0" * size)
    return cache.store(key, state, {"bytes": size})


def test_the_cache_finds_what_it_stored_and_nothing_else(tmp_path):
    cache = SnapshotCache(tmp_path / "snapshots", "10.0.2")
    assert cache.find("a" * 64) is None
    stored = _store(cache, "a" * 64, 10, tmp_path)
    assert cache.find("a" * 64) == stored
    assert cache.find("a" * 32 + "b" * 32) is None, "the same directory, another key: not a match"
    stored.state.unlink()
    assert cache.find("a" * 64) is None, "meta without state is no snapshot"
    _store(cache, "a" * 64, 10, tmp_path)
    cache.forget("a" * 64)
    assert cache.find("a" * 64) is None


def test_the_cache_evicts_the_least_recently_used_down_to_its_bound(tmp_path):
    cache = SnapshotCache(tmp_path / "snapshots", "10.0.2", limit=3500)
    for age, key in ((30, "1" * 64), (20, "2" * 64), (10, "3" * 64)):
        _store(cache, key, 1000, tmp_path)
        stamp = time.time() - age
        os.utime(cache.snapshot(key).meta, (stamp, stamp))
    assert cache.find("1" * 64) is not None  # used now: the most recent
    _store(cache, "4" * 64, 1000, tmp_path)
    left = sorted(meta.parent.name[0] for meta in (tmp_path / "snapshots").glob("*/meta.json"))
    assert left == ["1", "3", "4"], "2 was the least recently used"
    assert sum(f.stat().st_size for f in (tmp_path / "snapshots").rglob("state")) <= 3500


def test_makers_of_one_key_take_turns(tmp_path, monkeypatch):
    cache = SnapshotCache(tmp_path / "snapshots", "10.0.2")
    plan = snapshot.SnapshotPlan(cache, "sha256:q", "img")
    made = []

    def make(vm, key):
        made.append(key)
        time.sleep(0.2)  # a slow saver: the other maker must wait for it, not make its own
        return _store(cache, key, 10, tmp_path), {"created": True}

    monkeypatch.setattr(plan, "key_of", lambda vm: "k" * 64)
    monkeypatch.setattr(plan, "_make", make)
    outcomes = []
    threads = [threading.Thread(target=lambda: outcomes.append(plan.ensure(None)[1]["created"])) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert made == ["k" * 64] and sorted(outcomes) == [False, False, True]


@pytest.mark.heavy("boots a guest to save its snapshot")
def test_a_restored_guest_is_the_booted_guest_and_a_broken_snapshot_is_made_again(tmp_path, monkeypatch):
    from vnetct.core import paths
    from vnetct.core.native import vnetct_native
    from vnetct.sut.base import SutOptions
    from vnetct.sut.qemu import QemuSut
    from vnetct.vm.factory import RunContext, VmFactory
    from vnetct.vm.guest import Nic, VmSpec

    monkeypatch.setattr(paths, "CACHE", tmp_path / "cache")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "guest-image").symlink_to(paths.IMAGE_CACHE)
    monkeypatch.setattr(paths, "IMAGE_CACHE", tmp_path / "cache" / "guest-image")
    lines = []
    sut = QemuSut(SutOptions("qemu", str(paths.DEFAULT_QEMU), [], None, lines.append))
    short = "5a" + str(int(time.time() * 1000) % 10000).zfill(4)
    run = RunContext("snapshot-test", short, tmp_path / "run", sut, make_socket_root(short))
    sut.open(run)
    spec = VmSpec("snap", nics=[Nic("virtio-net-pci", "52:54:00:5a:00:01", id="standby",
                                    properties={"failover": "on"})])
    factory = VmFactory(run, tmp_path / "run" / "vms", "test")
    try:
        first = factory.vm_booted(spec)
        assert first.restored["created"] is True
        assert (first.artifacts / "snapshot-save" / "serial-snap.log").read_text().count("Linux version") == 1
        second = factory.vm_booted(spec)
        assert second.restored["created"] is False and second.restored["snapshot"] == first.restored["snapshot"]
        assert "vnetct-init: starting agent" in second.boot_serial_log.read_text(), "the boot it comes from"
        assert "boot-serial-snap" in second.artifact_paths()
        for vm in (first, second):
            # The trace and the VM's own QMP connection start after the restore.
            assert [entry["kind"] for entry in vm.trace_log] == ["start"]
            # Only the `cont` that lets it run, as a booted VM's: none of the restore's events.
            assert [e["name"] for e in vm.qmp.events if e["name"] in ("MIGRATION", "RESUME")] == ["RESUME"]
            assert abs(vm.hello["t_guest_realtime_ns"] - time.time_ns()) < 1e9 + (time.monotonic() - vm.started_at) * 1e9
            assert vm.qmp.execute("query-status")["status"] == "running"
            assert vm.request("ping") == {}
        # A guest that negotiates after the restore: the standby's driver sees the host's features.
        second.load_drivers(("failover", "net_failover", "virtio_net"))
        second.qmp.wait_event("FAILOVER_NEGOTIATED", {"device-id": "standby"}, 0, timeout=60)
        # A snapshot this QEMU cannot load: the restore fails naming it, and the next VM makes a new one.
        state = sut.snapshot_plan().cache.find(sut.snapshot_plan().key_of(second)).state
        # (of the recorded size: a state of another size is not found at all, below)
        state.write_bytes(b"QEVM not a stream".ljust(state.stat().st_size, b"\0"))
        with pytest.raises(snapshot.SnapshotError, match=r"(?s)restoring snapshot .* ended 'failed'.*removed"):
            factory.vm_booted(spec)
        third = factory.vm_booted(spec)
        assert third.restored["created"] is True
        meta = json.loads(sut.snapshot_plan().cache.find(sut.snapshot_plan().key_of(third)).meta.read_text())
        assert meta["bytes"] > 1_000_000 and meta["boot_s"] > 0
    finally:
        problems = factory.close()
        vnetct_native.sweep_netns(run.netns_prefix)
        shutil.rmtree(run.socket_root, ignore_errors=True)
    assert problems == []


def test_a_scope_marked_fresh_boot_asks_for_booted_guests(tmp_path):
    from vnetct.vm.factory import RunContext, VmFactory
    from vnetct.vm.guest import VmSpec

    asked = []

    class Sut:
        def adapt_spec(self, spec, incoming):
            return spec

        def make_vm(self, run, spec, *rest):
            asked.append(spec.snapshot)
            return type("Vm", (), {"start": lambda self: None})()

    run = RunContext("r", "abcdef", tmp_path, Sut(), tmp_path / "s")
    factory = VmFactory(run, tmp_path / "vms", "case")
    factory.vm(VmSpec("restored"))
    factory.fresh_boot = "judges the boot itself"
    factory.vm(VmSpec("booted"))
    assert asked == [True, False]
