"""`./vnetct run` on a fresh machine: the set-up (which installs QEMU) runs
before the options that need it are checked. Before the fix, a machine
without /usr/bin/qemu-system-x86_64 got "--qemu ...: not an executable
file" (exit 2) before any set-up. Here the set-up is replaced by one that
"installs" the QEMU binary, as apt would on a fresh machine."""

import stat

import pytest

from vnetct.cli import main as cli
from vnetct.cli import sanitizers, test_cmd


@pytest.fixture
def fresh_machine(tmp_path, monkeypatch):
    qemu = tmp_path / "usr-bin" / "qemu-system-x86_64"  # absent until the set-up installs it
    calls = []

    def prepare(**kwargs):
        calls.append(("prepare", qemu.exists()))
        qemu.parent.mkdir(parents=True, exist_ok=True)
        qemu.write_text("#!/bin/sh\necho 'QEMU emulator version 10.0.2'\n")
        qemu.chmod(qemu.stat().st_mode | stat.S_IXUSR)

    monkeypatch.setattr(cli.bootstrap, "prepare", prepare)
    monkeypatch.setattr(cli.bootstrap, "require_root", lambda: None)
    monkeypatch.setattr(cli, "_run_cases", lambda args, extra=None: calls.append(("cases", args.qemu)) or 0)
    return qemu, calls


def test_run_sets_up_before_checking_the_qemu_binary(fresh_machine, tmp_path):
    qemu, calls = fresh_machine
    status = cli.main(["run", "--qemu", str(qemu), "--out", str(tmp_path / "out")])
    assert status == 0
    assert calls == [("prepare", False), ("cases", str(qemu))], "set-up must run first, then the cases"


def test_a_qemu_still_missing_after_set_up_is_a_usage_error(fresh_machine, tmp_path, capsys):
    qemu, calls = fresh_machine
    missing = tmp_path / "nowhere" / "qemu"
    status = cli.main(["run", "--qemu", str(missing), "--out", str(tmp_path / "out")])
    assert status == cli.EXIT_USAGE
    assert calls == [("prepare", False)], "the set-up ran, the cases did not"
    assert f"--qemu {missing}: not an executable file" in capsys.readouterr().err


def test_usage_errors_that_need_no_set_up_come_first(fresh_machine, tmp_path):
    _, calls = fresh_machine
    assert cli.main(["run", "--profile", "nosuch", "--out", str(tmp_path / "out")]) == cli.EXIT_USAGE
    assert cli.main(["run", "-j", "0", "--out", str(tmp_path / "out")]) == cli.EXIT_USAGE
    assert calls == [], "no set-up for a command line that is wrong anyway"


@pytest.fixture
def test_command(monkeypatch):
    """`./vnetct test` with the set-up, the subprocesses and the sanitizer stage recorded, not run."""
    calls = []
    monkeypatch.setattr(test_cmd.bootstrap, "prepare", lambda **kwargs: calls.append(("prepare", kwargs)))
    monkeypatch.setattr(test_cmd.bootstrap, "ensure_packages", lambda **kwargs: calls.append(("packages", kwargs)))
    monkeypatch.setattr(test_cmd.bootstrap, "require_root", lambda: None)
    stage = sanitizers.StageResult()
    monkeypatch.setattr(test_cmd.sanitizers, "run_stage",
                        lambda **kwargs: calls.append(("sanitizer stage", kwargs)) or stage)

    class Done:
        returncode = 0

    monkeypatch.setattr(test_cmd.subprocess, "run", lambda argv, **kwargs: calls.append(("run", argv)) or Done())
    return calls, stage


@pytest.mark.parametrize("quick", [False, True])
def test_test_quick_skips_the_image_the_heavy_tests_and_the_sanitizer_stage(test_command, quick):
    """`./vnetct test --quick`: set-up without the guest image, then ctest and
    the light harness tests (pytest -m 'not heavy' in xdist workers); the full
    command builds the image, then runs the heavy tests in one process after
    the light ones, and the sanitizer stage last."""
    calls, _ = test_command
    assert cli.main(["test", *(["--quick"] if quick else []), "--", "-k", "x"]) == 0
    assert calls[0] == ("prepare", {"with_image": not quick, "for_tests": True})
    ctest, light = calls[1][1], calls[2][1]
    assert ctest[0] == "ctest"
    assert light[-6:] == ["-n", str(test_cmd.HARNESS_WORKERS), "-m", "not heavy", "-k", "x"]
    rest = calls[3:]
    if not quick:
        heavy = rest.pop(0)[1]
        assert heavy[-4:] == ["-m", "heavy", "-k", "x"] and "-n" not in heavy
    assert rest == ([] if quick else [("sanitizer stage", {"fuzz_seconds": sanitizers.DEFAULT_FUZZ_SECONDS})])


@pytest.mark.parametrize("codes, status", [((0, 0), 0), ((0, 5), 0), ((5, 0), 0), ((5, 5), 5), ((1, 0), 1),
                                           ((0, 2), 2), ((5, 1), 1)])
def test_the_harness_phases_exit_status(test_command, monkeypatch, codes, status):
    """A phase that selected nothing (pytest's 5) fails nothing while the other ran tests;
    any other non-zero status of either phase fails the command."""
    calls, _ = test_command
    answers = iter(codes)

    class Done:
        def __init__(self, code):
            self.returncode = code

    monkeypatch.setattr(test_cmd.subprocess, "run", lambda argv, **kwargs: Done(next(answers)))

    class Args:
        quick = False
        pytest_args = []

    assert test_cmd._harness_tests(Args()) == status


def test_sanitizers_only_runs_the_stage_alone_and_its_failure_fails_the_command(test_command, capsys):
    calls, stage = test_command
    stage.failures.append("build-asan: ctest host_agent/X_test.Y failed")
    assert cli.main(["test", "--sanitizers-only", "--fuzz-seconds", "5"]) == test_cmd.EXIT_FAILED
    assert calls == [("packages", {"for_tests": True}), ("sanitizer stage", {"fuzz_seconds": 5})]
    assert "sanitizer stage failed: build-asan: ctest host_agent/X_test.Y failed" in capsys.readouterr().err


def test_the_cli_starts_without_pytest_installed():
    """pytest and pytest-xdist come with the set-up: the CLI must load before it runs."""
    import subprocess
    import sys

    from vnetct.core import paths

    code = "import sys; sys.modules['pytest'] = None; sys.modules['xdist'] = None; import vnetct.cli.main"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                            env={"PYTHONPATH": str(paths.REPO / "harness" / "python")})
    assert result.returncode == 0, result.stderr
