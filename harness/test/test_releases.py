"""`--qemu-release`: the catalog, the wrapper, the cache and its lock, and the
command line, with a fake sysroot (shell scripts for the loader and QEMU) in
place of mmdebstrap: no network."""

import json
import stat
import threading
from pathlib import Path

import pytest

from vnetct.cli import main as cli
from vnetct.setup import releases
from vnetct.setup.releases import ReleaseError

FAKE_QEMU = """#!/bin/sh
for arg in "$@"; do
  if [ "$arg" = "-version" ] || [ "$arg" = "--version" ]; then
    echo "QEMU emulator version {version} (Debian 1:{version}+ds-1)"; echo "Copyright"; exit 0
  fi
done
printf 'arg:%s\\n' "$@"
echo "module-dir:$QEMU_MODULE_DIR"
"""
# The loader is called as: LOADER --library-path DIRS QEMU ARGS...: it checks the path and runs QEMU.
FAKE_LOADER = """#!/bin/sh
[ "$1" = "--library-path" ] || { echo "loader: no --library-path" >&2; exit 127; }
echo "library-path:$2" >&2
shift 2
exec "$@"
"""
STATUS = """Package: base-files
Status: install ok installed
Version: 13.8

Package: qemu-system-x86
Status: install ok installed
Priority: optional
Version: 1:{version}+ds-1
Description: QEMU full system emulation binaries (x86)
 the long description: Version: 0.0
"""


def _script(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


class FakeBuilder:
    """Stands in for mmdebstrap: a sysroot with a loader, a QEMU and a dpkg status."""

    def __init__(self, version="11.1.3", fail=None):
        self.version, self.fail, self.calls = version, fail, []

    def __call__(self, release, target, log_path):
        self.calls.append((release.name, target))
        target.mkdir(parents=True)
        if self.fail:
            log_path.write_text("E: " + self.fail + "\n")
            raise ReleaseError(f"QEMU {release.name}: mmdebstrap failed (exit 1); log: {log_path}\nE: {self.fail}")
        _script(target / releases.QEMU_IN_SYSROOT, FAKE_QEMU.format(version=self.version))
        _script(target / releases.LOADER, FAKE_LOADER)
        (target / "usr/share/qemu").mkdir(parents=True)
        (target / "usr/share/seabios").mkdir(parents=True)
        (target / "var/lib/dpkg").mkdir(parents=True)
        (target / "var/lib/dpkg/status").write_text(STATUS.format(version=self.version))


def quiet(lines=None):
    return (lambda text: lines.append(text)) if lines is not None else (lambda text: None)


# -- the catalog ---------------------------------------------------------------------------

def test_catalog_names_map_to_their_suites():
    assert releases.release_named("7.2").suites == ("bookworm",)
    assert releases.release_named("11.1").suites == ("trixie", "trixie-backports")
    assert releases.release_named("10.0").installed
    assert releases.release_named("trixie").suites == ("trixie",), "a suite name asks for a sysroot"
    assert releases.release_named("bookworm-backports").suites == ("bookworm", "bookworm-backports")
    assert releases.release_named("7.2").key == releases.release_named("bookworm").key, "one sysroot for both"


@pytest.mark.parametrize("name", ["7", "11", "10.0.2", "buster", "stable", "../trixie", ""])
def test_an_unknown_name_is_refused_listing_the_known_ones(name):
    with pytest.raises(ReleaseError) as caught:
        releases.release_named(name)
    assert f"--qemu-release {name}: unknown release" in str(caught.value)
    assert "7.2, 10.0, 11.1, bookworm, bookworm-backports, trixie, trixie-backports, sid" in str(caught.value)


def test_mmdebstrap_takes_qemu_from_the_last_suite():
    argv = releases.mmdebstrap_argv(releases.release_named("11.1"), Path("/x"))
    assert argv[:3] == ["mmdebstrap", "--variant=apt", "--include=qemu-system-x86"]
    assert '--aptopt=APT::Default-Release "trixie-backports"' in argv
    assert argv[-4:] == ["trixie", "/x", "deb http://deb.debian.org/debian trixie main",
                         "deb http://deb.debian.org/debian trixie-backports main"]


# -- the wrapper -----------------------------------------------------------------------------

def test_the_wrapper_runs_the_sysroot_qemu_through_its_loader_passing_every_argument(tmp_path):
    prepared = releases.prepare("11.1", cache=tmp_path, say=quiet(), builder=FakeBuilder())
    sysroot = tmp_path / "qemu-releases" / "trixie+trixie-backports"
    assert prepared.qemu == sysroot / "vnetct-qemu"
    text = prepared.qemu.read_text()
    assert 'export QEMU_MODULE_DIR="$root/usr/lib/x86_64-linux-gnu/qemu"' in text
    assert '-L "$root/usr/share/qemu" -L "$root/usr/share/seabios" "$@"' in text
    assert "ipxe" not in text, "a firmware dir the sysroot lacks is not passed"
    import subprocess

    result = subprocess.run([str(prepared.qemu), "-machine", "help", "a b"], capture_output=True, text=True,
                            check=True)
    real = sysroot.resolve()
    assert result.stderr == f"library-path:{real}/usr/lib/x86_64-linux-gnu:{real}/lib/x86_64-linux-gnu\n"
    assert result.stdout.splitlines() == [
        "arg:-L", f"arg:{real}/usr/share/qemu", "arg:-L", f"arg:{real}/usr/share/seabios",
        "arg:-machine", "arg:help", "arg:a b", f"module-dir:{real}/usr/lib/x86_64-linux-gnu/qemu"]


def test_release_json_records_what_was_prepared(tmp_path):
    prepared = releases.prepare("11.1", cache=tmp_path, say=quiet(), builder=FakeBuilder("11.1.3"))
    record = json.loads((prepared.qemu.parent / "release.json").read_text())
    assert record["release"] == "11.1" and record["suites"] == ["trixie", "trixie-backports"]
    assert record["package_version"] == "1:11.1.3+ds-1", "from the sysroot's dpkg status, not a description line"
    assert record["version_line"] == "QEMU emulator version 11.1.3 (Debian 1:11.1.3+ds-1)"
    assert record["qemu_sha256"] == releases.digest(prepared.qemu.parent / releases.QEMU_IN_SYSROOT)
    assert record["seconds"] >= 0 and record["prepared_at"]


# -- the cache -------------------------------------------------------------------------------

def test_prepared_once_then_taken_from_the_cache(tmp_path):
    builder = FakeBuilder()
    lines = []
    first = releases.prepare("11.1", cache=tmp_path, say=quiet(lines), builder=builder)
    second = releases.prepare("trixie-backports", cache=tmp_path, say=quiet(lines), builder=builder)
    assert len(builder.calls) == 1 and not first.cached and second.cached
    assert second.qemu == first.qemu
    assert lines[0].startswith("vnetct: preparing QEMU 11.1 (trixie, trixie-backports) in ")
    assert lines[1].startswith("vnetct: QEMU 11.1 prepared in ")
    assert "cached in" in lines[2]


def test_a_changed_binary_is_a_cache_miss(tmp_path):
    builder = FakeBuilder()
    first = releases.prepare("7.2", cache=tmp_path, say=quiet(), builder=builder)
    with open(first.qemu.parent / releases.QEMU_IN_SYSROOT, "a") as binary:
        binary.write("# changed\n")
    again = releases.prepare("7.2", cache=tmp_path, say=quiet(), builder=builder)
    assert len(builder.calls) == 2 and not again.cached


@pytest.mark.parametrize("damage", ["no-record", "leftover-temp"])
def test_a_half_made_directory_is_never_reused(tmp_path, damage):
    root = tmp_path / "qemu-releases"
    FakeBuilder()(releases.release_named("7.2"), root / ("bookworm" if damage == "no-record" else "bookworm.tmp"),
                  tmp_path / "log")
    builder = FakeBuilder()
    prepared = releases.prepare("7.2", cache=tmp_path, say=quiet(), builder=builder)
    assert len(builder.calls) == 1 and builder.calls[0][1] == root / "bookworm.tmp", "built in the temp dir"
    assert (prepared.qemu.parent / "release.json").is_file() and not (root / "bookworm.tmp").exists()


def test_a_failed_preparation_names_the_release_and_leaves_no_sysroot(tmp_path):
    with pytest.raises(ReleaseError) as caught:
        releases.prepare("7.2", cache=tmp_path, say=quiet(), builder=FakeBuilder(fail="Release file expired"))
    assert "QEMU 7.2: mmdebstrap failed" in str(caught.value) and "Release file expired" in str(caught.value)
    assert not (tmp_path / "qemu-releases" / "bookworm").exists()
    builder = FakeBuilder()
    assert not releases.prepare("7.2", cache=tmp_path, say=quiet(), builder=builder).cached
    assert len(builder.calls) == 1


def test_a_sysroot_without_qemu_is_an_error_naming_it(tmp_path):
    def empty(release, target, log_path):
        target.mkdir(parents=True)

    with pytest.raises(ReleaseError, match=r"QEMU 11.1: the sysroot .* has no usr/bin/qemu-system-x86_64"):
        releases.prepare("11.1", cache=tmp_path, say=quiet(), builder=empty)


# -- the lock --------------------------------------------------------------------------------

def _hold_lock(tmp_path, key):
    import fcntl

    lock = (tmp_path / "qemu-releases" / f"{key}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock, "a+")
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    handle.write("pid 4242\n")
    handle.flush()
    return handle


def test_a_second_preparer_waits_for_the_first_and_then_takes_its_sysroot(tmp_path):
    import fcntl

    holder = _hold_lock(tmp_path, "bookworm")  # "another process" preparing 7.2
    waiting = threading.Event()
    lines, outcome, builder = [], {}, FakeBuilder()

    def say(text):
        lines.append(text)
        if "waiting for" in text:
            waiting.set()

    def second():
        outcome["prepared"] = releases.prepare("7.2", cache=tmp_path, say=say, builder=builder, lock_timeout=60)

    thread = threading.Thread(target=second)
    thread.start()
    assert waiting.wait(30), "the second preparer did not report that it waits"
    # The first finishes: it builds and records the sysroot under its lock, then lets go.
    releases._make(releases.release_named("7.2"), tmp_path / "qemu-releases" / "bookworm", FakeBuilder(), quiet())
    fcntl.flock(holder, fcntl.LOCK_UN)
    holder.close()
    thread.join(30)
    assert not thread.is_alive()
    assert outcome["prepared"].cached and builder.calls == [], "the second used the first one's sysroot"
    assert "waiting for pid 4242, which is preparing it" in lines[0]


def test_a_lock_held_too_long_is_an_error_naming_its_holder(tmp_path):
    holder = _hold_lock(tmp_path, "trixie+trixie-backports")
    try:
        with pytest.raises(ReleaseError, match=r"QEMU 11.1: another process \(pid 4242\) has been preparing it"):
            releases.prepare("11.1", cache=tmp_path, say=quiet(), builder=FakeBuilder(), lock_timeout=0.2)
    finally:
        holder.close()


# -- 10.0: the apt-installed QEMU ----------------------------------------------------------

def test_10_0_is_the_apt_installed_binary_when_it_is_10_0(tmp_path, monkeypatch):
    qemu = tmp_path / "qemu-system-x86_64"
    _script(qemu, FAKE_QEMU.format(version="10.0.2"))
    monkeypatch.setattr(releases.paths, "DEFAULT_QEMU", qemu)
    assert releases.prepare("10.0", cache=tmp_path, say=quiet()).qemu == qemu
    _script(qemu, FAKE_QEMU.format(version="10.1.0"))
    with pytest.raises(ReleaseError, match=r"QEMU 10.0: .* is not QEMU 10.0 \(QEMU emulator version 10.1.0"):
        releases.prepare("10.0", cache=tmp_path, say=quiet())


# -- the SUT's identity ----------------------------------------------------------------------

def test_describe_gives_the_release_and_the_digest_of_the_binary_run(tmp_path):
    prepared = releases.prepare("11.1", cache=tmp_path, say=quiet(), builder=FakeBuilder())
    described = releases.describe(str(prepared.qemu))
    assert described["release"] == "11.1"
    assert described["qemu_sha256"] == releases.digest(prepared.qemu.parent / releases.QEMU_IN_SYSROOT)
    assert described["qemu_sha256"] != releases.digest(prepared.qemu), "the QEMU's digest, not the wrapper's"
    assert releases.describe("/usr/bin/qemu-system-x86_64") is None


# -- the command line -------------------------------------------------------------------------

@pytest.fixture
def cli_calls(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(cli.bootstrap, "prepare", lambda **kwargs: calls.append(("setup",)))
    monkeypatch.setattr(cli.bootstrap, "require_root", lambda: None)
    monkeypatch.setattr(cli, "_run_cases", lambda args, extra=None: calls.append(("cases", args.qemu)) or 0)
    return calls


def test_qemu_and_qemu_release_together_are_a_usage_error(cli_calls, tmp_path, capsys):
    status = cli.main(["run", "--qemu", "/usr/bin/qemu-system-x86_64", "--qemu-release", "11.1",
                       "--out", str(tmp_path / "out")])
    assert status == cli.EXIT_USAGE and cli_calls == [], "refused before any set-up"
    assert "--qemu /usr/bin/qemu-system-x86_64 and --qemu-release 11.1: give one of them" in capsys.readouterr().err


def test_an_unknown_release_is_a_usage_error_before_set_up(cli_calls, tmp_path, capsys):
    assert cli.main(["run", "--qemu-release", "9.9", "--out", str(tmp_path / "out")]) == cli.EXIT_USAGE
    assert cli_calls == []
    assert "--qemu-release 9.9: unknown release (known: 7.2, 10.0, 11.1, bookworm" in capsys.readouterr().err


def test_a_release_is_prepared_after_the_set_up_and_run_as_qemu(cli_calls, tmp_path, monkeypatch):
    wrapper = tmp_path / "vnetct-qemu"
    _script(wrapper, "#!/bin/sh\n")

    def prepare(name):
        cli_calls.append(("release", name))
        return releases.Prepared(releases.release_named(name), wrapper, {}, cached=False)

    monkeypatch.setattr(cli.releases, "prepare", prepare)
    assert cli.main(["run", "--qemu-release", "7.2", "--out", str(tmp_path / "out")]) == 0
    assert cli_calls == [("setup",), ("release", "7.2"), ("cases", str(wrapper))]


def test_a_failed_preparation_is_a_set_up_failure(cli_calls, tmp_path, monkeypatch, capsys):
    def prepare(name):
        raise ReleaseError(f"QEMU {name}: mmdebstrap of bookworm failed (exit 1)")

    monkeypatch.setattr(cli.releases, "prepare", prepare)
    assert cli.main(["run", "--qemu-release", "7.2", "--out", str(tmp_path / "out")]) == cli.EXIT_SETUP
    assert cli_calls == [("setup",)]
    assert "vnetct: QEMU 7.2: mmdebstrap of bookworm failed" in capsys.readouterr().err


def test_qemu_release_needs_a_profile_that_runs_qemu(cli_calls, tmp_path, capsys):
    assert cli.main(["run", "--profile", "reference", "--qemu-release", "11.1",
                     "--out", str(tmp_path / "out")]) == cli.EXIT_USAGE
    assert "--qemu-release 11.1: this profile runs no QEMU" in capsys.readouterr().err


# -- the accelerator probe's cache keeps one verdict per binary -------------------------------

def test_the_accelerator_probe_cache_keeps_a_verdict_per_release(tmp_path, monkeypatch):
    from vnetct.setup import accel
    from vnetct.vm.guest import Accelerator

    probed = []
    monkeypatch.delenv("VNETCT_ACCEL", raising=False)
    monkeypatch.setattr(accel.os, "access", lambda path, mode: True)
    monkeypatch.setattr(accel, "_probe_kvm", lambda qemu, image: probed.append(qemu) or Accelerator("tcg", "x", "max"))
    binaries = []
    for version in ("7.2.22", "11.1.3"):
        qemu = tmp_path / version / "qemu"
        _script(qemu, FAKE_QEMU.format(version=version))
        binaries.append(str(qemu))
    for qemu in binaries + binaries:  # alternating runs: each binary probed once
        accel.choose(qemu, {"digest": "d"}, tmp_path / "cache", quiet())
    assert probed == binaries


# -- a device model a release lacks: the case skips with the reason --------------------------

DEVICE_HELP = """#!/bin/sh
[ "$1 $2" = "-device help" ] || exit 1
echo 'Network devices:'
echo 'name "e1000e", bus PCI, desc "Intel 82574L GbE Controller"'
{igb}echo 'name "virtio-net-pci", bus PCI, alias "virtio-net"'
"""


@pytest.mark.parametrize("has_igb", [True, False])
def test_the_qemu_sut_lacks_igb_when_device_help_does_not_list_it(tmp_path, has_igb):
    from vnetct.sut.qemu import QemuSut

    qemu = tmp_path / "qemu"
    _script(qemu, DEVICE_HELP.format(igb="echo 'name \"igb\", bus PCI, desc \"Intel 82576\"'\n" if has_igb else ""))
    sut = QemuSut.__new__(QemuSut)  # only what missing() reads: no guest image, no accelerator probe
    sut.binary, sut.version, sut._device_models = str(qemu), "7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)", None
    if has_igb:
        assert sut.lacks("igb") is None
    else:
        assert sut.lacks("igb") == ("this QEMU (7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)) has no igb device model "
                                    "('-device help' does not list it; QEMU has it since 8.0)")
    assert sut.lacks("datapath") is None


def test_the_igb_case_declares_that_it_needs_igb():
    import ast

    tree = ast.parse((Path(releases.paths.CASES) / "failover" / "config.py").read_text())
    case = next(node for node in tree.body if getattr(node, "name", "") == "test_igb_primary_is_multifunction")
    needs = [ast.unparse(d) for d in case.decorator_list if "needs" in ast.unparse(d)]
    assert needs == ["pytest.mark.needs('igb')"]


# -- a primary enslaved but not yet up does not carry (QEMU 7.2's e1000e: link up 2-3 s after the open) --

def _netdevs(primary_state):
    mac = "52:54:00:6f:55:cc"
    return [{"name": "eth0", "failover_role": "master", "mac": mac, "operstate": "up", "statistics": {}},
            {"name": "eth1", "failover_role": "standby", "mac": mac, "operstate": "up", "statistics": {}},
            {"name": "eth2", "failover_role": "primary", "mac": mac, "operstate": primary_state, "statistics": {}}]


class GuestWhosePrimaryComesUp:
    """The guest agent's view: the primary is enslaved but down; once the
    master is up (the stream's start), one agent event brings it up, or none."""

    def __init__(self, comes_up: bool):
        from vnetct.vm.guest import NoMoreEvents

        self.name, self.comes_up, self.master_up, self.reports = "vm", comes_up, False, []
        guest = self

        class Agent:
            events = [{"event": "hello"}]

            def wait_event(self, name, match, index, timeout):
                if not (guest.comes_up and guest.master_up) or len(Agent.events) > 1:
                    raise NoMoreEvents("nothing more until the harness acts")
                Agent.events.append({"event": "netdev-changed", "name": "eth2", "operstate": "up"})
                return {"index": len(Agent.events) - 1}

        self.agent = Agent()

    def report(self, timeout=30.0):
        state = "up" if len(self.agent.events) > 1 else "down"
        self.reports.append(state)
        return _netdevs(state)


@pytest.mark.parametrize("comes_up", [True, False])
def test_carried_by_primary_is_judged_only_once_the_primary_is_up(monkeypatch, comes_up):
    from vnetct.core.verdict import RuleViolation
    from vnetct.traffic import echo

    vm = GuestWhosePrimaryComesUp(comes_up)
    judged, closed = [], []

    class Stream:  # stands for the echo stream: its start brings the master up, its judging is recorded
        def __init__(self, vm_, case, master):
            self.master = master

        def start(self):
            vm.master_up = True
            return self

        def wait_clean(self, seconds):
            judged.append((self.master, vm.reports[-1]))
            raise RuntimeError("judging started")

        def close(self):
            closed.append(True)

    monkeypatch.setattr(echo, "EchoStream", Stream)
    if comes_up:
        with pytest.raises(RuntimeError, match="judging started"):
            echo.assert_carried_by(vm, None, "52:54:00:6f:55:cc")
        assert judged == [("eth0", "up")], "the judging starts once the primary is up, not before"
    else:
        with pytest.raises(RuleViolation) as caught:
            echo.assert_carried_by(vm, None, "52:54:00:6f:55:cc")
        assert caught.value.rules == ["FO-DATA-01"] and "the primary never came up in the guest" in str(caught.value)
        assert judged == [] and closed == [True]
