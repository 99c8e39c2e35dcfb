"""Parallel lanes on pytest-xdist: `vnetct run -j N` runs pytest with
`-n N --dist loadgroup`; `-j 1` runs plain pytest in one process.

One xdist worker is one lane (gw0 -> lane A, gw1 -> B, ...), with its own name
prefix for namespaces and TAPs, its own artifact folder `<run>/lane-a/` and
its output lines tagged `[A]`. Cases that use a session-scoped VM (the
fixtures in SHARED_FIXTURES) share an xdist_group, so that VM boots once;
every other case goes to whichever worker is free.

Results: a worker attaches the record of each finished case (and, when it
changed, its SUT identity and case catalogue) to the case's teardown report,
which xdist serialises to the controller; the controller adds the records to
the run's one results.json and junit.xml (both rewritten after each case). A worker's end-of-session problems (the sweep, the session VMs'
teardown) travel in `config.workeroutput` to `pytest_testnodedown`. Output
lines go from the workers to the controller through one pipe, which the
controller numbers and prints."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional

import pytest

from vnetct.report.results import Results, now_iso

SHARED_FIXTURES = ("failover_pair",)
_MAX_LINE = 3000  # a pipe write up to PIPE_BUF (4096) is atomic: lines of two workers never mix


def pytest_args(jobs: int) -> List[str]:
    """What `-j N` means to pytest (vnetct.cli.main)."""
    if jobs <= 1:
        return []
    return ["-n", str(jobs), "--dist", "loadgroup", f"--max-worker-restart={max_restarts(jobs)}"]


def max_restarts(jobs: int) -> int:
    """xdist replaces a crashed worker (the case it ran is recorded as a run
    problem); each replacement takes the next worker number."""
    return jobs


def worker_short_id(run_short_id: str, worker_index: int) -> str:
    """The 6-hex-char name prefix of worker `gw<index>`: distinct within the run."""
    return f"{(int(run_short_id, 16) + 1 + worker_index) % 0x1000000:06x}"


def short_ids(run_short_id: str, jobs: int) -> List[str]:
    """Every name prefix the run's case runners may have used (the CLI's final sweep)."""
    if jobs <= 1:
        return [run_short_id]
    return [worker_short_id(run_short_id, index) for index in range(jobs + max_restarts(jobs))]


def _worker_index(worker_id: str) -> int:
    return int(worker_id.removeprefix("gw"))


def lane_tag(worker_id: str) -> str:
    index = _worker_index(worker_id)
    return chr(ord("A") + index) if index < 26 else worker_id


def lane_name(worker_id: str) -> str:
    return f"lane-{lane_tag(worker_id).lower()}"


def is_controller(config) -> bool:
    return not hasattr(config, "workerinput") and config.pluginmanager.hasplugin("xdist") \
        and config.getoption("dist", "no") != "no"


def group_shared(items) -> None:
    """Cases using a shared session VM go to one worker (loadgroup)."""
    for item in items:
        shared = [name for name in SHARED_FIXTURES if name in getattr(item, "fixturenames", ())]
        if shared:
            item.add_marker(pytest.mark.xdist_group("+".join(shared)))


def plain_nodeid(nodeid: str) -> str:
    """A node id without the `@group` suffix xdist's loadgroup appends (an
    `@` inside a parameter id, `[a@b]`, stays)."""
    head, at, group = nodeid.rpartition("@")
    return head if at and "::" in head and "]" not in group else nodeid


class Worker:
    """This process is xdist worker gw<N>: lane N's identity and its channels."""

    def __init__(self, config):
        self.config = config
        self.worker_id = config.workerinput["workerid"]
        self.tag = lane_tag(self.worker_id)
        self.lane = lane_name(self.worker_id)
        self.short_id = config.workerinput["vnetct_short_id"]
        self._lines = open(config.workerinput["vnetct_lines"], "w", buffering=1)  # noqa: SIM115 - lives with us
        self._sent: Dict[str, Any] = {}

    @staticmethod
    def of(config) -> Optional["Worker"]:
        return Worker(config) if hasattr(config, "workerinput") and "vnetct_short_id" in config.workerinput else None

    def say(self, text: str, starting: Optional[str] = None) -> None:
        """A line for the terminal; `starting`: the node id of the case it starts."""
        record = {"tag": self.tag, "text": text[:_MAX_LINE], "start": starting}
        try:
            self._lines.write(json.dumps(record) + "\n")
        except (OSError, ValueError):  # the controller is gone: the line is not worth the case
            pass

    def attach(self, report, case: dict, header: Dict[str, Any]) -> None:
        """The case's record (and what changed of the header) ride on its
        teardown report to the controller."""
        report.vnetct_case = case
        changed = {key: value for key, value in header.items() if self._sent.get(key) != value}
        if changed:
            report.vnetct_header = json.loads(json.dumps(changed))
            self._sent.update(report.vnetct_header)

    def finish(self, run_problems: List[str]) -> None:
        self.config.workeroutput["vnetct_run_problems"] = list(run_problems)


class Controller:
    """The xdist controller's half: gives each worker its identity, prints
    their lines, and gathers their records into `results`."""

    def __init__(self, config, results: Results, run_short_id: str, rules: Dict[str, dict],
                 interrupted_case: Callable[..., dict]):
        self.config = config
        self.results = results
        self.run_short_id = run_short_id
        self.rules = rules
        self.interrupted_case = interrupted_case
        self.order: Dict[str, int] = {}
        self.catalogue: Dict[str, dict] = {}
        self.running: Dict[str, tuple] = {}
        self.lane_of: Dict[str, str] = {}  # a started case's lane, as its worker said
        self.total = 0
        self.started = 0
        self.results.data["lanes"] = []
        self._read, self._write = os.pipe()
        self._relay = threading.Thread(target=self._print_lines, name="vnetct-lanes", daemon=True)
        self._relay.start()

    def _print_lines(self) -> None:
        with open(self._read, "r", errors="replace") as lines:
            for line in lines:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                text = record["text"]
                if record.get("start"):
                    self.lane_of[record["start"]] = f"lane-{record['tag'].lower()}"
                    self.started += 1
                    text = f"[{self.started:2d}/{self.total}] {text}"
                sys.stdout.write(f"[{record['tag']}] {text}\n")
                sys.stdout.flush()

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node):
        worker_id = node.workerinput["workerid"]
        node.workerinput["vnetct_short_id"] = worker_short_id(self.run_short_id, _worker_index(worker_id))
        node.workerinput["vnetct_lines"] = f"/proc/{os.getpid()}/fd/{self._write}"

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodeready(self, node):
        lane = lane_name(node.workerinput["workerid"])
        if lane not in self.results.data["lanes"]:
            self.results.data["lanes"].append(lane)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids):
        if not self.order:
            self.order = {plain_nodeid(nodeid): index for index, nodeid in enumerate(ids)}
            self.total = len(ids)

    def pytest_runtest_logstart(self, nodeid, location):
        self.running[plain_nodeid(nodeid)] = (now_iso(), time.monotonic())

    def pytest_runtest_logreport(self, report):
        nodeid = plain_nodeid(report.nodeid)
        header = getattr(report, "vnetct_header", None)
        if header:
            self._take_header(header)
        case = getattr(report, "vnetct_case", None)
        if case is not None:
            self.running.pop(nodeid, None)
            self.results.add_case(case)
        elif report.when not in ("setup", "call", "teardown"):  # xdist's record of a crashed worker
            self.running.pop(nodeid, None)
            self.results.data["run_problems"].append(f"{report.longrepr} (the case has no record)")
            self.results.write()

    def _take_header(self, header: Dict[str, Any]) -> None:
        if "sut" in header:  # the same SUT in every lane; the NIC models are the lanes' together
            models = self.results.data.get("sut", {}).get("nic_models", [])
            sut = dict(header["sut"])
            sut["nic_models"] = models + [m for m in sut.get("nic_models", []) if m not in models]
            self.results.data["sut"] = sut
        if "collected" in header:
            self.results.data["collected"] = header["collected"]
        if "catalogue" in header:
            self.catalogue = header["catalogue"]

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error):
        output = getattr(node, "workeroutput", None) or {}
        lane = lane_name(node.workerinput["workerid"])
        self.results.data["run_problems"] += [f"{lane}: {problem}"
                                              for problem in output.get("vnetct_run_problems", [])]
        if error is not None and output.get("exitstatus") != 2:
            self.results.data["run_problems"].append(f"{lane}: its worker went down: {error}")
        self.results.write()

    def pytest_keyboard_interrupt(self, excinfo):
        """The cases the workers were running are recorded too, as errors."""
        self.results.data["interrupted"] = True
        for nodeid, (started, t0) in self.running.items():
            entry = self.catalogue.get(nodeid, {})
            rules = [self.rules[rule_id] for rule_id in entry.get("rules", []) if rule_id in self.rules]
            self.results.add_case(self.interrupted_case(nodeid, entry.get("id"), rules, entry.get("subject"),
                                                        started, time.monotonic() - t0))
        self.running.clear()
        self.results.write()

    @pytest.hookimpl(hookwrapper=True, trylast=True)
    def pytest_sessionfinish(self, session, exitstatus):
        try:
            yield  # xdist shuts its workers down
        finally:
            os.close(self._write)  # the relay ends when the last worker's end is closed too
            self._relay.join(timeout=10)
            for case in self.results.cases:  # the interrupted cases' lanes: their workers' lines said them
                if "lane" not in case and case["nodeid"] in self.lane_of:
                    case["lane"] = self.lane_of[case["nodeid"]]
            known = len(self.order)
            self.results.data["cases"].sort(key=lambda case: self.order.get(case["nodeid"], known))
            self.results.write(finished=True)
