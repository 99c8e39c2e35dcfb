"""The pytest plugin: case ids and rules, fixtures by lifecycle stage, SUT
profiles, progress on the terminal, results.json and junit.xml.

Cases live under cases/, one feature per file. A case names the rule(s) it
checks with @pytest.mark.rule("FO-NEG-01"); its id mirrors the file layout
(cases/failover/negotiation.py::test_primary_hidden -> failover/negotiation/
primary-hidden)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from vnetct import lanes
from vnetct.core import paths
from vnetct.core.native import vnetct_native
from vnetct.core.verdict import RuleViolation, rules_named
from vnetct.sut.base import CAPABILITIES, PROFILES, SutOptions
from vnetct.core import run_lock, sweep
from vnetct.vm.factory import RunContext, VmFactory, sweep_run
from vnetct.core.quiet import slot_for
from vnetct.core.text import for_terminal, is_terminal_safe
from vnetct.failover.trace import assert_trace_conformant, snapshot_at_end
from vnetct.report.recorder import CaseRecorder
from vnetct.report.results import Results, case_id_from_nodeid, interrupted_case, now_iso
from vnetct.report.rules_table import DEFAULT_SUBJECT, SUBJECTS

RULES = {rule["id"]: rule for rule in vnetct_native.rules()}


def pytest_addoption(parser):
    group = parser.getgroup("vnetct")
    group.addoption("--vnetct-run-dir", default=None, help="where results.json, junit.xml and artifacts go")
    group.addoption("--vnetct-profile", default="qemu", help="SUT profile: " + ", ".join(PROFILES))
    group.addoption("--vnetct-qemu", default=str(paths.DEFAULT_QEMU), help="QEMU binary under test")
    group.addoption("--vnetct-command", default="", help="the command line that reproduces the run")
    group.addoption("--vnetct-list", action="store_true", help="print case ids and rules, run nothing")
    group.addoption("--vnetct-mutation", action="append", default=[],
                    help="reference profile: break the model on purpose (self-test); repeatable")
    group.addoption("--vnetct-fault", default=None,
                    help="profile qemu: seed this host fault into every VM (vnetct.faults.catalog)")
    group.addoption("--vnetct-vf", default=None,
                    help="profile vf: the prepared host as JSON (vnetct.sriov.PreparedHost.to_json; the CLI sets it)")
    group.addoption("--vnetct-short-id", default=None, help="6 hex chars naming the run's namespaces and devices")


class RunState:
    def __init__(self, config):
        self.config = config
        option = config.getoption
        self.profile = PROFILES.get(option("--vnetct-profile"))
        if self.profile is None:
            raise pytest.UsageError(f"--profile {option('--vnetct-profile')}: unknown profile; known: "
                                    f"{', '.join(PROFILES)}")
        problem = self.profile.usage_error(option("--vnetct-mutation"), None)
        if problem:
            raise pytest.UsageError(problem)
        if option("--vnetct-mutation"):  # refused once here, not as an error of every case
            from vnetct.core.native import vnetct_native
            known = vnetct_native.mutation_names()
            unknown = [name for name in option("--vnetct-mutation") if name not in known]
            if unknown:
                raise pytest.UsageError(f"--mutation {', '.join(unknown)}: unknown (known: {', '.join(known)})")
        self.host = json.loads(option("--vnetct-vf")) if option("--vnetct-vf") else None
        if (self.host is None) == self.profile.takes_host_config:
            raise pytest.UsageError(f"--profile {self.profile.name} and --vnetct-vf: the prepared host goes with "
                                    f"the profiles that take --host-config (./vnetct run --host-config FILE "
                                    f"prepares the host and passes it)")
        run_dir = option("--vnetct-run-dir")
        if run_dir is None:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            run_dir = paths.OUT / f"{stamp}-{secrets.token_hex(3)}"
        # results.json goes into the run directory; this process's artifacts too, or,
        # on an xdist worker (vnetct.lanes), into its lane's folder there.
        results_dir = Path(run_dir)
        results_dir.mkdir(parents=True, exist_ok=True)
        self.run_id = results_dir.name
        self.worker = lanes.Worker.of(config)
        self.run_dir = results_dir / self.worker.lane if self.worker else results_dir
        self.run_dir.mkdir(exist_ok=True)
        self.short_id = self.worker.short_id if self.worker else option("--vnetct-short-id") or secrets.token_hex(3)
        self.command = option("--vnetct-command") or " ".join(sys.argv)
        self.results = Results(results_dir, {"run_id": self.run_id, "profile": self.profile.name,
                                             "command": self.command, "sut": {}}, rules=RULES.values())
        self.catalogue: Dict[str, dict] = {}  # a worker's cases, for the controller
        self.controller = None
        if lanes.is_controller(config):
            self.controller = lanes.Controller(config, self.results, self.short_id, RULES, interrupted_case)
            config.pluginmanager.register(self.controller, "vnetct-lanes")
        self.context: Optional[RunContext] = None
        self.recorders: Dict[str, CaseRecorder] = {}
        self.phases: Dict[str, Dict[str, Any]] = {}
        self.total = 0
        self.quiet_slot = slot_for(self.run_dir)
        self.done = 0

    def save(self) -> None:
        """results.json now; a worker's records go to the controller instead."""
        if self.worker is None:
            self.results.write()

    def progress(self, line: str, starting: Optional[str] = None) -> None:
        """A line for the terminal; `starting`: the node id of the case it starts."""
        if self.worker is not None:  # the controller prints it, tagged with the lane
            self.worker.say(line, starting)
            return
        line = for_terminal(line)  # steps and reasons quote the guest and QEMU
        if starting:
            line = f"[{self.done:2d}/{self.total}] {line}"
        # Looked up on use: the terminal reporter registers after our configure hook.
        # Capture is suspended around the write, as pytest's live logging does,
        # so steps show while a case runs, not after it.
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        if terminal is not None and capture is not None:
            with capture.global_and_fixture_disabled():
                terminal.write_line(line)
                terminal.flush()
        elif terminal is not None:
            terminal.write_line(line)
        else:
            print(line, flush=True)

    def run_context(self) -> RunContext:
        """The run and its SUT, made on first use (a SUT may probe its binary
        and the accelerator)."""
        if self.context is None:
            options = SutOptions(self.profile.name, self.config.getoption("--vnetct-qemu"),
                                 list(self.config.getoption("--vnetct-mutation")), self.host, self.progress,
                                 self.config.getoption("--vnetct-fault"))
            try:
                sut = self.profile.sut_class()(options)
            except Exception as error:  # noqa: BLE001 - the SUT's own words, as a usage error
                raise pytest.UsageError(f"profile {self.profile.name}: {error}") from error
            socket_root = sweep.make_socket_root(self.short_id)
            self.context = RunContext(self.run_id, self.short_id, self.run_dir, sut, socket_root)
            sut.open(self.context)
            self.results.data["sut"] = sut.identity()
            self.save()
        return self.context


_state: Optional[RunState] = None


def pytest_configure(config):
    global _state
    run_lock.keep_held_locks_to_ourselves()
    if config.getoption("--vnetct-list") or config.getoption("--collect-only"):
        return
    _state = RunState(config)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the xdist_group marks (lanes.group_shared)
def pytest_collection_modifyitems(session, config, items):
    problems = []
    for item in items:
        item.vnetct_nodeid = lanes.plain_nodeid(item.nodeid)
        item.vnetct_id = case_id_from_nodeid(item.vnetct_nodeid)
        marker = item.get_closest_marker("rule")
        rule_ids = list(marker.args) if marker else []
        if not rule_ids:
            problems.append(f"{item.nodeid}: no @pytest.mark.rule(...) naming the rule it checks")
        for rule_id in rule_ids:
            if rule_id not in RULES:
                problems.append(f"{item.nodeid}: unknown rule id '{rule_id}' (known: {', '.join(RULES)})")
        item.vnetct_rules = [RULES[rule_id] for rule_id in rule_ids if rule_id in RULES]
        for marker in item.iter_markers("needs"):
            for capability in marker.args:
                if capability not in CAPABILITIES:
                    problems.append(f"{item.nodeid}: needs unknown capability '{capability}' "
                                    f"(known: {', '.join(CAPABILITIES)})")
        for name in ("no_trace_check", "fresh_boot", "cpu_quiet", "long"):
            opted_out = item.get_closest_marker(name)
            if opted_out is not None and (len(opted_out.args) != 1 or not str(opted_out.args[0]).strip()):
                problems.append(f"{item.nodeid}: @pytest.mark.{name} needs the reason, in one string")
        item.vnetct_subject = _subject(item, problems)
        # -k can select by case id (substring, e.g. -k failover/config) or rule id (-k FO-CFG-02).
        item.extra_keyword_matches.add(item.vnetct_id)
        item.extra_keyword_matches.update(rule_ids)
    if problems:
        raise pytest.UsageError("bad case declarations:\n  " + "\n  ".join(problems))
    # The long cases first (their length is the protocol's own timers), so that in a parallel
    # run none starts late and decides the run's length; then the cases with guests (they take
    # the vm_factory fixture: QEMU, restores, migrations: seconds each), then those without (the
    # reference backend's bench, the XML checks: milliseconds to a second or two), which fill
    # the lanes' ends evenly; the CPU-quiet cases last: the other lanes are winding down by
    # then, so the wait for them to end costs least (vnetct.core.quiet).
    items.sort(key=lambda item: (item.get_closest_marker("long") is None,
                                 "vm_factory" not in getattr(item, "fixturenames", ()),
                                 item.get_closest_marker("cpu_quiet") is not None))
    if _state is not None:  # every case of the files collected, before -k: expectations name cases of the suite
        _state.results.data["collected"] = [item.vnetct_id for item in items]
        if _state.worker is not None:  # what the controller needs to record a case this worker never finishes
            _state.catalogue = {item.vnetct_nodeid: {"id": item.vnetct_id, "subject": item.vnetct_subject,
                                                     "rules": [rule["id"] for rule in item.vnetct_rules]}
                                for item in items}
    lanes.group_shared(items)


def _subject(item, problems: List[str]) -> str:
    marker = item.get_closest_marker("subject")
    if marker is None:
        return DEFAULT_SUBJECT
    if len(marker.args) != 1 or marker.kwargs or marker.args[0] not in SUBJECTS:
        given = ", ".join([*map(repr, marker.args), *(f"{k}={v!r}" for k, v in marker.kwargs.items())])
        problems.append(f"{item.nodeid}: bad @pytest.mark.subject({given}): give one of {', '.join(SUBJECTS)}")
        return DEFAULT_SUBJECT
    return marker.args[0]


def pytest_collection_finish(session):
    if _state is not None:
        _state.total = len(session.items)  # after -k deselection
    if session.config.getoption("--vnetct-list"):
        for item in session.items:
            rules = ", ".join(rule["id"] for rule in item.vnetct_rules)
            print(f"{item.vnetct_id:60s} {rules}")
            for rule in item.vnetct_rules:
                print(f"{'':60s}   {rule['id']}: {rule['sentence']}")


def pytest_report_teststatus(report, config):
    # Our own progress lines replace pytest's dots.
    if _state is None:
        return None
    if report.when == "call" or report.outcome != "passed":
        return report.outcome, "", ""
    return "", "", ""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Every case holds the run's CPU-quiet slot while it runs: shared, or
    alone for a case marked cpu_quiet (vnetct.core.quiet)."""
    if _state is None:
        yield
        return
    quiet = item.get_closest_marker("cpu_quiet")
    if quiet is not None:
        _state.progress(f"       waiting for the CPU-quiet slot ({quiet.args[0]})")
    waited = _state.quiet_slot.enter(quiet is not None)
    if quiet is not None:
        _state.progress(f"       the CPU-quiet slot after {waited:.1f} s: no other case runs")
    try:
        yield
    finally:
        if not (quiet is not None and nextitem is not None and nextitem.get_closest_marker("cpu_quiet")):
            _state.quiet_slot.leave()


def pytest_runtest_logstart(nodeid, location):
    if _state is None:
        return
    _state.done += 1


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if _state is None:
        return
    rules = ", ".join(rule["id"] for rule in item.vnetct_rules)
    _state.progress(f"{item.vnetct_id}  ({rules})", starting=item.vnetct_nodeid)
    _state.phases[item.nodeid] = {"item": item, "started": now_iso(), "t0": time.monotonic(), "reports": []}
    _arm_case_timeout(item)
    for marker in item.iter_markers("needs"):
        for capability in marker.args:
            reason = _state.run_context().sut.lacks(capability)
            if reason is not None:
                pytest.skip(reason)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item):
    signal.setitimer(signal.ITIMER_REAL, 0)  # teardown cleans up whatever time it takes


# --- per-case timeout ------------------------------------------------------------
# A backstop, not a verdict: every wait in a case has its own, shorter deadline.
# Set-up (boots) and the case body together get CASE_TIMEOUT_S unless the case
# says otherwise with @pytest.mark.case_timeout(seconds).
CASE_TIMEOUT_S = 300.0


class CaseTimeout(Exception):
    """The case outlived its timeout (set-up and body)."""


def _arm_case_timeout(item) -> None:
    marker = item.get_closest_marker("case_timeout")
    seconds = float(marker.args[0]) if marker else CASE_TIMEOUT_S

    def expired(signum, frame):
        raise CaseTimeout(f"{item.vnetct_id}: the case ran longer than its timeout of {seconds:.0f} s "
                          f"(set-up and body; @pytest.mark.case_timeout changes it)")

    signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)


# --- the factory's trace check -----------------------------------------------------
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """After the case body, every VM the case used has its trace replayed by the
    trace checker: a violation fails a case that passed otherwise (naming the
    rule); after a failure the verdicts are still saved as evidence. A case
    marked @pytest.mark.no_trace_check(reason) is not checked (the reason is
    recorded)."""
    outcome = yield
    recorder = _state.recorders.get(item.nodeid) if _state is not None else None
    if recorder is None:
        return
    opted_out = item.get_closest_marker("no_trace_check")
    if opted_out is not None:
        recorder.extra["trace_check"] = f"off: {opted_out.args[0]}"
        return
    violations: List[RuleViolation] = []
    for vm in recorder.judged_vms():
        snapshot_at_end(vm)
        try:
            assert_trace_conformant(recorder, vm)
        except RuleViolation as violation:
            violations.append(violation)
    if not violations:
        return
    named = [rule for violation in violations for rule in violation.rules]
    phase = _state.phases.get(item.nodeid)
    if phase is not None:  # the trace's violations count even when the body failed first
        phase.setdefault("violated", []).extend(named)
    if outcome.excinfo is None:
        raise RuleViolation(list(dict.fromkeys(named)), "; ".join(
            str(violation).split(": ", 1)[1] for violation in violations))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failure's rule ids (vnetct.core.verdict): the case's violated rules.
    A report quoting control characters (from the guest or QEMU) is shown
    with them escaped: pytest prints it on the terminal as it is."""
    outcome = yield
    report = outcome.get_result()
    shown = report.longrepr
    if isinstance(shown, tuple):  # a skip: (file, line, reason)
        if not is_terminal_safe(str(shown[2])):
            report.vnetct_reason = for_terminal(_reason(report))
            report.longrepr = (shown[0], shown[1], for_terminal(str(shown[2])))
    elif shown is not None and not is_terminal_safe(str(shown)):
        report.vnetct_reason = for_terminal(_reason(report))
        report.longrepr = for_terminal(str(shown))
    if _state is None or call.excinfo is None or item.nodeid not in _state.phases:
        return
    named = rules_named(call.excinfo.value, RULES)
    _state.phases[item.nodeid].setdefault("violated", []).extend(named)


@pytest.hookimpl(tryfirst=True)  # on a worker, before xdist sends the report on (it carries the case)
def pytest_runtest_logreport(report):
    if _state is None or report.nodeid not in _state.phases:
        return
    phase = _state.phases[report.nodeid]
    phase["reports"].append(report)
    if report.when == "teardown":
        case = _finish_case(phase)
        del _state.phases[report.nodeid]
        if _state.worker is not None:
            _state.worker.attach(report, case, {"sut": _state.results.data["sut"],
                                                "collected": _state.results.data.get("collected"),
                                                "catalogue": _state.catalogue})
        else:
            _state.results.add_case(case)


def _reason(report) -> str:
    if getattr(report, "vnetct_reason", None) is not None:
        return report.vnetct_reason
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return crash.message
    if isinstance(report.longrepr, tuple):  # skips: (file, line, reason)
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(report.longrepr or "")[:2000]


LOG_TAIL_LINES = 30


def _log_tails(artifacts: Dict[str, Path]) -> Dict[str, str]:
    """The last lines of each VM's console and QEMU stderr, for a failed case."""
    tails = {}
    for name, path in artifacts.items():
        if name.startswith(("serial-", "qemu-")):
            try:
                lines = Path(path).read_text(errors="replace").splitlines()
            except OSError:
                continue
            tails[name] = "\n".join(lines[-LOG_TAIL_LINES:])
    return tails


def _finish_case(phase: dict) -> dict:
    item = phase["item"]
    outcome, reason, details = "passed", None, ""
    failed = [report for report in phase["reports"] if report.failed]
    skipped = [report for report in phase["reports"] if report.skipped]
    if failed:  # a failure (even in teardown after a skip) outranks a skip
        report = failed[0]
        outcome = "failed" if report.when == "call" else "error"
        reason = (f"{report.when}: " if report.when != "call" else "") + _reason(report)
        details = str(report.longrepr)[-8000:]
    elif skipped:
        outcome, reason = "skipped", _reason(skipped[0])
    recorder = _state.recorders.pop(item.nodeid, None)
    case = {
        "id": item.vnetct_id, "nodeid": item.vnetct_nodeid,
        "rules": [{"id": r["id"], "sentence": r["sentence"]} for r in item.vnetct_rules],
        "subject": item.vnetct_subject, "outcome": outcome, "reason": reason,
        "duration_s": round(time.monotonic() - phase["t0"], 3),
        "started": phase["started"], "artifacts": {}, "metrics": {}, "steps": [],
    }
    if details:
        case["details"] = details
    if outcome in ("failed", "error"):
        # What the failure named (results.json: violated_rules); empty: it judged no rule.
        case["violated_rules"] = list(dict.fromkeys(phase.get("violated", [])))
    if recorder is not None:
        for finisher in recorder.finishers:
            try:
                finisher()
            except Exception as error:  # noqa: BLE001 - a summary must not change the outcome
                recorder.extra.setdefault("record_problems", []).append(f"{type(error).__name__}: {error}")
        if outcome in ("failed", "error"):
            case["log_tails"] = _log_tails(recorder.artifacts)
        if details:
            (recorder.dir / "failure.txt").write_text(details)
            recorder.artifact("failure", recorder.dir / "failure.txt")
        case["artifacts"] = {name: os.path.relpath(path, _state.results.run_dir)
                             for name, path in recorder.artifacts.items()}
        case["metrics"] = recorder.metrics
        case["steps"] = recorder.steps
        case.update(recorder.extra)
    if _state.worker is not None:
        case["lane"] = _state.worker.lane
    label = {"passed": "PASSED", "failed": "FAILED", "skipped": "SKIPPED", "error": "ERROR"}[outcome]
    suffix = f": {reason}" if reason and outcome != "passed" else ""
    if outcome in ("failed", "error") and not case["violated_rules"]:
        suffix += " [names no rule: judges none]"
    _state.progress(f"       {label} in {case['duration_s']:.1f} s{suffix}")
    return case


def pytest_keyboard_interrupt(excinfo):
    if _state is None or _state.controller is not None:  # the controller: vnetct.lanes
        return
    _state.results.data["interrupted"] = True
    # The case that was running is recorded too, as an error.
    for phase in list(_state.phases.values()):
        item = phase["item"]
        _state.results.cases.append(interrupted_case(item.vnetct_nodeid, item.vnetct_id, item.vnetct_rules,
                                                     item.vnetct_subject, phase["started"],
                                                     time.monotonic() - phase["t0"]))
    _state.phases.clear()
    _state.save()


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_sessionfinish(session, exitstatus):
    # pytest's own sessionfinish tears the remaining fixtures down (also after
    # Ctrl-C) and may raise; whatever happens, sweep and write the results after it.
    # trylast: inside xdist's wrapper on a worker, which sends workeroutput after us.
    try:
        yield
    finally:
        if _state is not None and _state.controller is None:
            if _state.context is not None:
                try:
                    cleaned = sweep_run(_state.context)
                except Exception as error:  # noqa: BLE001 - the run must still be written
                    cleaned = [f"sweep failed: {error}"]
                _state.results.data["run_problems"] += [f"end-of-run sweep: {line}" for line in cleaned]
            if _state.worker is not None:
                _state.worker.finish(_state.results.data["run_problems"])
            else:
                _state.results.write(finished=True)


# --- fixtures -------------------------------------------------------------------

@pytest.fixture(scope="session")
def run_context() -> RunContext:
    if _state is None:
        pytest.skip("vnetct run state not configured")
    return _state.run_context()


@pytest.fixture
def case(request) -> CaseRecorder:
    recorder = CaseRecorder(_state, request.node.vnetct_id)
    _state.recorders[request.node.nodeid] = recorder
    previous = _state.context.step if _state.context else None
    if _state.context is not None:
        _state.context.step = recorder.step
    yield recorder
    if _state.context is not None and previous is not None:
        _state.context.step = previous


def _factory(run: RunContext, name: str):
    factory = VmFactory(run, run.run_dir / "vms", name)
    yield factory
    problems = factory.close()
    if problems and name == "session":
        # Not the fault of whichever case happened to run last: a run problem.
        _state.results.data["run_problems"] += [f"session teardown: {problem}" for problem in problems]
    elif problems:
        raise AssertionError(f"teardown of {name} left problems: " + "; ".join(problems))


@pytest.fixture(scope="session")
def session_factory(run_context):
    """VMs shared by several files (e.g. one booted failover pair)."""
    yield from _factory(run_context, "session")


@pytest.fixture
def vm_factory(request, run_context, case):
    """VMs owned by one case; torn down and leak-checked when it ends; their
    traces are checked when the case body ends (pytest_runtest_call). A case
    marked @pytest.mark.fresh_boot(reason) boots its guests (no snapshot)."""
    fresh_boot = request.node.get_closest_marker("fresh_boot")
    for factory in _factory(run_context, "case"):
        factory.fresh_boot = fresh_boot.args[0] if fresh_boot else None
        case.factories.append(factory)
        yield factory


def _interrupt_on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
signal.signal(signal.SIGHUP, _interrupt_on_sigterm)  # the terminal hung up: tear down as after Ctrl-C
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    # Started as a background job (SIGINT ignored, so Python installed no handler): Ctrl-C
    # reaching this process anyway (the CLI's process group) still tears the run down.
    signal.signal(signal.SIGINT, signal.default_int_handler)
