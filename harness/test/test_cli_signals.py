"""SIGTERM and SIGHUP sent to the CLI alone end a run as Ctrl-C does: the case
runner tears down, the finished cases are kept in results.json and junit.xml,
the running one is recorded as interrupted, and the exit status is 130."""

import json
import os
import select
import signal
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import pytest

from vnetct.core import paths

CASES = '''
import os
import select

import pytest


@pytest.mark.rule("FO-NEG-01")
def test_a_finished_case():
    pass


@pytest.mark.rule("FO-NEG-02")
def test_a_case_that_waits():
    with open(os.environ["TEST_STARTED_FIFO"], "w") as started:
        started.write("started\\n")
    select.select([], [], [])  # until the run is interrupted
'''

DRIVER = '''
import sys
from pathlib import Path

from vnetct.cli import main
from vnetct.core import paths

paths.CASES = Path(sys.argv[1])  # the cases above instead of the suite
sys.exit(main.main(["run", "--no-setup", "--profile", "reference", "-j", "1", "--out", sys.argv[2]]))
'''


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["sigterm", "sighup"])
def test_a_signal_to_the_cli_ends_the_run_like_ctrl_c(tmp_path, monkeypatch, signum):
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "waiting.py").write_text(CASES)
    fifo = tmp_path / "started"
    os.mkfifo(fifo)
    monkeypatch.setenv("TEST_STARTED_FIFO", str(fifo))
    monkeypatch.setenv("VNETCT_RUN_LOCKS", str(tmp_path / "locks"))
    monkeypatch.setenv("PYTHONPATH", str(paths.REPO / "harness" / "python"))
    out = tmp_path / "out"
    # A session of its own: a case runner the CLI failed to stop would keep the output pipe
    # open; the whole group is killed at the end, so the test ends either way.
    cli = subprocess.Popen([sys.executable, "-c", DRIVER, str(cases), str(out)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        started = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        readable, _, _ = select.select([started], [], [], 120)  # the second case runs
        os.close(started)
        assert readable, "the waiting case did not start"
        os.kill(cli.pid, signum)  # the CLI alone, not its process group
        output, _ = cli.communicate(timeout=60)
    finally:
        try:
            os.killpg(cli.pid, signal.SIGKILL)  # the CLI and whatever it left
        except ProcessLookupError:
            pass
        if cli.returncode is None:
            cli.communicate()
    assert cli.returncode == 130, output[-3000:]
    run_dir = (out / "latest").resolve()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["interrupted"] is True
    assert [(case["id"].rsplit("/", 1)[-1], case["outcome"]) for case in results["cases"]] == [
        ("a-finished-case", "passed"), ("a-case-that-waits", "error")]
    assert "interrupted" in results["cases"][1]["reason"]
    suite = ElementTree.parse(run_dir / "junit.xml").getroot().find("testsuite")
    assert suite.get("tests") == "2"
    assert "interrupted; tearing down" in output
