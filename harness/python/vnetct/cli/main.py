"""vnetct: a conformance harness for virtio-net failover and live-TAP migration.

Commands:
  run     set up (packages, build, guest image), run the conformance suite
          against the SUT profile, write out/<run-id>/{results.json,junit.xml}
          and per-case artifacts, point out/latest at it. Exit 0 when every
          outcome on the SUT is what expectations/<sut>-<release>.yaml expects
          for its release (a case without an entry must pass or skip with its
          reason) and the reference's self-check passed.
  test    the same set-up, then the unit tests (GoogleTest through ctest),
          the pytest suites of the harness itself and the sanitizer stage
          (ASan+UBSan, TSan, fuzz targets). CI runs exactly this.
  list    print every case id and the rule it checks.
  setup   only the set-up steps.
  report  write report.html (self-contained HTML) for results directories.
  check-config  a libvirt domain XML's <teaming> against libvirt's and the
          failover rules, with the QEMU options for the team.
  certify run the failover migration cases N times; the figures a NIC vendor
          quotes (median and worst), an environment fingerprint, a verdict.
  matrix  run the suite on several QEMU releases (--qemu-release), one
          report: rules and cases x releases, figures, what changed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import List, Optional

from vnetct.setup import bootstrap, releases
from vnetct.cli import certify, selftest
from vnetct.cli import check_config
from vnetct.cli import prepare_image as image_prep
from vnetct.cli import matrix
from vnetct.cli import test_cmd
from vnetct.core import expectations, paths, quiet, run_lock, sweep
from vnetct.core.text import for_terminal
from vnetct.sut.base import profile_named

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_SETUP = 3
EXIT_INTERRUPTED = 130
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # to the case runner as SIGINT, like Ctrl-C
# Two lanes more than cores: with guests restored from snapshots the lanes spend most of
# their time waiting on the protocol's timers (hotplug, unplug, cancel); measured on 2 cores,
# warm, the long cases first: -j3 81.4 s, -j4 66.7 s, -j5 64.3 s (one run each, December 2026).
DEFAULT_JOBS = min(4, (os.cpu_count() or 1) + 2)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vnetct", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    run = commands.add_parser("run", help="run the conformance suite (default profile: qemu)",
                              description="Set up, then run the conformance cases and write results.")
    run.add_argument("-k", dest="keyword", metavar="EXPR",
                     help="only matching cases: a pytest -k expression over case ids, rule ids and test names "
                          "(e.g. -k failover/config, -k FO-NEG-02, -k 'config and not igb')")
    run.add_argument("--qemu", metavar="PATH", default=None,
                     help=f"QEMU binary under test (default: {paths.DEFAULT_QEMU})")
    run.add_argument("--qemu-release", metavar="NAME", default=None,
                     help="instead of --qemu: a QEMU release from Debian's packages, prepared once into the cache "
                          "(7.2, 10.0 = the apt-installed one, 11.1, or a Debian suite: bookworm, trixie, ...)")
    run.add_argument("--profile", metavar="NAME", default="qemu", help="SUT profile (default: qemu)")
    run.add_argument("--host-config", metavar="FILE", type=Path,
                     help="with --profile vf: the host profile (PF, VF, vfio-pci, MAC/VLAN/trust, standby carrier; "
                          "harness/HOST-PROFILE.md, example: examples/host-vf.yaml)")
    run.add_argument("--out", metavar="DIR", type=Path, default=paths.OUT,
                     help="results root; each run gets <DIR>/<run-id> (default: %(default)s)")
    run.add_argument("--no-setup", action="store_true", help="skip apt/build/image steps (they must be done)")
    run.add_argument("-j", "--jobs", type=int, default=None, metavar="N",
                     help="run the cases in N parallel lanes, pytest-xdist workers (default: %d with guests, 1 for "
                          "the in-process reference profile; 1 = one after another, without xdist)" % DEFAULT_JOBS)
    run.add_argument("--repeat", type=int, default=1, metavar="N",
                     help="run N times and report every case whose outcome changed (repeat.json)")
    run.add_argument("--fault", metavar="NAME", default=None,
                     help="profile qemu: seed a host fault into every VM (./vnetct selftest --list names them); "
                          "the cases citing its rule must fail naming it")
    run.add_argument("--no-snapshots", action="store_true",
                     help="boot every guest instead of restoring a snapshot of a booted guest (.cache/snapshots; "
                          "the same as VNETCT_SNAPSHOTS=0)")
    run.add_argument("--strict", action="store_true",
                     help="an unexpected pass (a case that passes against its expected failure) fails the run too")
    run.add_argument("--update-expectations", action="store_true",
                     help="rewrite expectations/<sut>-<release>.yaml of the SUT's release from this run "
                          "(expectations/README.md)")
    run.add_argument("--mutation", metavar="NAME", action="append", default=[],
                     help="with --profile reference: break the reference model on purpose, to show which cases "
                          "catch it (repeatable; names: LeaveWaitUnplugEarly, NegotiatedBeforeAck, ...)")

    test_cmd.add_parser(commands)
    commands.add_parser("list", help="print case ids and the rule each checks")
    certify.add_parser(commands)
    matrix.add_parser(commands)
    selftest.add_parser(commands)
    check_config.add_parser(commands)
    image_prep.add_parser(commands)
    commands.add_parser("setup", help="install packages, build, and build the guest image")

    report = commands.add_parser(
        "report", help="write report.html for a run (and compare it with other runs)",
        description="Write a self-contained report.html from results.json: into the first RESULTS_DIR "
                    "(default: out/latest), comparing it with the other RESULTS_DIRs given.")
    report.add_argument("results_dirs", nargs="*", type=Path, metavar="RESULTS_DIR",
                        help="run directories holding results.json (default: %s)" % (paths.OUT / "latest"))
    report.add_argument("-o", "--output", type=Path, metavar="FILE",
                        help="where to write the report (default: <first RESULTS_DIR>/report.html); "
                             "artifact links are made relative to it")
    report.add_argument("--thresholds", type=Path, metavar="FILE",
                        help="JSON object of certification limits, e.g. {\"unplug_latency\": 0.5} "
                             "(figures: unplug_latency s, replug_latency s, downtime ms, switchover_loss "
                             "datagrams, longest_loss_window ms)")
    return parser


def _case_collection_args(terminal: bool = True, targets: Optional[List[Path]] = None) -> List[str]:
    """How pytest finds the cases: every .py under cases/ (one feature per
    file, no test_ prefix), imported by path so equal file names can coexist."""
    output = ["-q", "--no-header"] if terminal else ["-p", "no:terminal"]
    return [*(str(t) for t in (targets or [paths.CASES])), "-p", "vnetct.plugin", *output,
            "-p", "no:cacheprovider", "--import-mode=importlib", "-o", "python_files=*.py",
            "--rootdir", str(paths.REPO)]


def _point_latest(out: Path, run_dir: Path) -> None:
    latest = out / "latest"
    temporary = out / f".latest-{os.getpid()}"
    if temporary.is_symlink():
        temporary.unlink()
    temporary.symlink_to(run_dir.name)
    os.replace(temporary, latest)


def command_run(args) -> int:
    # Usage errors that need nothing installed come first (they fail fast); the
    # --qemu check comes after the set-up, which installs the default QEMU.
    try:
        profile = profile_named(args.profile)
    except KeyError as error:
        print(f"vnetct: {error.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    if args.jobs is None:  # an in-process profile's cases take milliseconds: workers would only cost their start
        args.jobs = DEFAULT_JOBS if profile.boots_guests else 1
    if args.jobs < 1:
        print(f"vnetct: --jobs {args.jobs}: must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    if args.repeat < 1:
        print(f"vnetct: --repeat {args.repeat}: must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    problem = releases.usage_error(args.qemu, args.qemu_release, profile.needs_qemu)
    if problem:
        print(f"vnetct: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if args.repeat > 1:
        from vnetct.cli import repeat

        if args.update_expectations:
            print("vnetct: --update-expectations takes one run, not --repeat", file=sys.stderr)
            return EXIT_USAGE

        return repeat.command_repeat(args, sys.argv[2:])
    problem = profile.usage_error(args.mutation, args.host_config)
    if problem:
        print(f"vnetct: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if args.update_expectations and (args.fault or args.mutation):
        print("vnetct: --update-expectations writes a release's deviations: not from a run with a seeded fault "
              "(--fault) or a broken model (--mutation)", file=sys.stderr)
        return EXIT_USAGE
    try:
        expectations.check_folder()
    except expectations.ExpectationsError as error:
        print(f"vnetct: {error}", file=sys.stderr)
        return EXIT_USAGE
    if args.fault is not None:
        from vnetct.faults.catalog import FAULTS

        if args.profile != "qemu":
            print(f"vnetct: --fault seeds a bug into a real QEMU: it needs --profile qemu, not {args.profile}",
                  file=sys.stderr)
            return EXIT_USAGE
        if args.fault not in FAULTS:
            print(f"vnetct: --fault {args.fault}: unknown fault; known: {', '.join(FAULTS)}", file=sys.stderr)
            return EXIT_USAGE
    host_profile = None
    if profile.takes_host_config:
        from vnetct.sut.host_profile import HostProfileError, load

        try:
            host_profile = load(args.host_config)
        except HostProfileError as error:
            print(f"vnetct: --host-config {error}", file=sys.stderr)
            return EXIT_USAGE
    if profile.one_lane and args.jobs != 1:
        print(f"vnetct: profile {profile.name} runs in one lane (-j 1): the VF belongs to one guest at a time",
              flush=True)
        args.jobs = 1
    if not args.no_setup:
        if profile.needs_guest_image:
            bootstrap.prepare(with_image=True, targets=bootstrap.RUN_TARGETS)
        else:  # no VM: no guest image, no QEMU needed
            bootstrap.ensure_packages()
            bootstrap.build_native(targets=("vnetct_native",))
    bootstrap.require_root()
    if args.qemu_release:  # after the set-up: it installed what the preparation needs
        try:
            args.qemu = str(releases.prepare(args.qemu_release).qemu)
        except releases.ReleaseError as error:
            print(f"vnetct: {error}", file=sys.stderr)
            return EXIT_SETUP
    args.qemu = args.qemu or str(paths.DEFAULT_QEMU)
    if profile.needs_qemu and (not Path(args.qemu).is_file() or not os.access(args.qemu, os.X_OK)):
        print(f"vnetct: --qemu {args.qemu}: not an executable file", file=sys.stderr)
        return EXIT_USAGE
    if args.no_snapshots:
        os.environ["VNETCT_SNAPSHOTS"] = "0"  # the case runners inherit it (vnetct.sut.qemu)
    with _signals_interrupt():  # SIGTERM, SIGHUP: torn down as after Ctrl-C (the vf profile's host put back)
        if host_profile is not None:
            return _run_on_vfs(args, host_profile)
        return _run_cases(args)


@contextlib.contextmanager
def _signals_interrupt():
    def interrupt(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {signum: signal.signal(signum, interrupt) for signum in FORWARDED_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run_on_vfs(args, host_profile) -> int:
    """Profile vf: the host prepared as the host profile says around the
    cases, and put back afterwards, however the run ends (SIGTERM too). The
    host's lock goes to the case runner with the run's own."""
    import json

    from vnetct.sut.sriov import SriovSetupError, prepared_host

    try:
        with prepared_host(host_profile, lambda line: print(line, flush=True)) as host:
            status = _run_cases(args, [f"--vnetct-vf={json.dumps(host.to_json())}"], inherited=[host.lock.fd])
        if host.restore_report["failures"]:
            print("vnetct: the host could not be fully put back (see above)", file=sys.stderr)
            return EXIT_FAILED
        return status
    except SriovSetupError as error:
        print(f"vnetct: set-up failed: {error}", file=sys.stderr)
        return EXIT_SETUP


def _run_cases(args, extra_args: Optional[List[str]] = None, inherited: Optional[List[int]] = None) -> int:
    from vnetct import lanes  # imports pytest: installed by the set-up, which has run by now

    short_id = secrets.token_hex(3)
    run_id = f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{short_id}"
    short_ids = lanes.short_ids(short_id, args.jobs)
    # The run's lock first (it is alive from here on), then the runs killed earlier are swept.
    lock = run_lock.start_run(short_ids, {"run": run_id, "command": " ".join(["./vnetct", *sys.argv[1:]])})
    try:
        say = lambda text: print(text, flush=True)  # noqa: E731
        for line in run_lock.sweep_stale(sweep.sweep_names, say) + _sweep_abandoned_host(say):
            print(f"vnetct:   {line}", flush=True)
        return _run_locked(args, run_id, short_id, short_ids, extra_args, [lock.fd, *(inherited or [])])
    finally:
        lock.release()


def _sweep_abandoned_host(say) -> List[str]:
    """The vf profile's changes to the host that a killed run left in its undo
    journal (no live run holds the host's lock): put back now."""
    from vnetct.sut import sriov

    if not sriov.journal_path().exists() or not run_lock.is_free(sriov.lock_path()):
        return []
    try:
        sriov.restore_left_behind(say)
    except sriov.SriovSetupError as error:
        return [f"COULD NOT put the host back: {error}"]
    return [f"restored the host from {sriov.journal_path()}"]


def _run_locked(args, run_id: str, short_id: str, short_ids: List[str], extra_args: Optional[List[str]],
                inherited: List[int]) -> int:
    from vnetct import lanes

    out = args.out.resolve()
    run_dir = out / run_id
    run_dir.mkdir(parents=True)
    _point_latest(out, run_dir)
    os.environ[quiet.ENVIRONMENT] = str(run_dir / "cpu-quiet.lock")  # one slot for all the run's case runners
    command_line = " ".join(["./vnetct", *sys.argv[1:]])
    under_test = f", QEMU {args.qemu}" if profile_named(args.profile).needs_qemu else ""
    print(f"vnetct: run {run_id}, profile {args.profile}{under_test}", flush=True)
    print(f"vnetct: results in {run_dir}", flush=True)

    arguments = [*_case_collection_args(), f"--vnetct-run-dir={run_dir}", f"--vnetct-profile={args.profile}",
                 f"--vnetct-qemu={args.qemu}", f"--vnetct-command={command_line}", f"--vnetct-short-id={short_id}",
                 *lanes.pytest_args(args.jobs)]
    if args.keyword:
        arguments += ["-k", args.keyword]
    arguments += [f"--vnetct-fault={args.fault}"] if args.fault else []
    arguments += [f"--vnetct-mutation={mutation}" for mutation in args.mutation] + list(extra_args or [])
    if args.jobs > 1:
        print(f"vnetct: {args.jobs} lanes (pytest-xdist workers); the cases sharing a booted VM in one", flush=True)
    try:
        started = time.monotonic()
        status = _run_pytest(arguments, cwd=paths.REPO, inherited=inherited)
        # Last line of defence if the case runner itself died (SIGKILL, SIGSEGV): everything named with the run.
        leftovers = [line for prefix in short_ids for line in sweep.sweep_names(prefix)]
        return _summarise(run_dir, status, time.monotonic() - started, leftovers,
                          strict=args.strict, update=args.update_expectations)
    except BaseException:
        # Ctrl-C or a crash after the cases ran (sweep): the finished cases still get their report.
        if _write_report(run_dir):
            print(f"vnetct: report.html in {run_dir}", file=sys.stderr)
        raise



def _run_pytest(pytest_args: List[str], cwd: Path, inherited: List[int] = ()) -> int:
    # A child process: a crash in a case cannot take the CLI's summary with it,
    # and Ctrl-C reaches both (same process group), so pytest tears down. SIGTERM
    # and SIGHUP sent to the CLI alone are passed on as the Ctrl-C they mean.
    environment = {**test_cmd.pytest_env(), run_lock.HELD_LOCKS: ",".join(map(str, inherited))}
    process = subprocess.Popen([sys.executable, "-m", "pytest", *pytest_args], cwd=cwd, env=environment,
                               pass_fds=tuple(inherited))

    def forward(signum, _frame):
        # As SIGTERM, which the case runner's plugin always turns into the Ctrl-C teardown:
        # a SIGINT may be ignored there (a shell starts a background job with SIGINT
        # ignored, and Python then installs no handler for it).
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED_SIGNALS}
    interrupts = 0
    try:
        while True:
            try:
                return process.wait()
            except KeyboardInterrupt:
                interrupts += 1
                if interrupts == 1:  # pytest got the same SIGINT and tears down
                    print("\nvnetct: interrupted; tearing down (finished cases are kept; Ctrl-C again to hurry)",
                          flush=True)
                elif interrupts == 2:
                    print("\nvnetct: terminating the case runner", flush=True)
                    process.terminate()
                else:
                    print("\nvnetct: killing the case runner (its QEMUs die with it)", flush=True)
                    process.kill()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _summarise_guests(results: dict) -> None:
    """How the run's guests came up: restored from a snapshot (and the cost of
    the snapshots this run made) or booted (vnetct.vm.snapshot)."""
    guests: dict = {}
    for case in results.get("cases", []):
        if isinstance(case.get("guests"), dict):
            guests.update(case["guests"])
    restored = [g["restored"] for g in guests.values() if isinstance(g, dict) and isinstance(g.get("restored"), dict)]
    if not guests:
        return
    made = [r for r in restored if r.get("created")]
    ready = sorted(float(r["ready_s"]) for r in restored if isinstance(r.get("ready_s"), (int, float)))
    line = f"vnetct: guests: {len(restored)} restored from snapshots, {len(guests) - len(restored)} booted"
    if ready:
        line += f"; ready {ready[len(ready) // 2]:.2f} s after QMP's greeting (median; slowest {ready[-1]:.2f} s)"
    if made:
        line += (f"; {len(made)} snapshots made in this run "
                 f"({sum(float(r.get('total_s', 0)) for r in made):.0f} s of boots and saves)")
    print(line)


def _summarise(run_dir: Path, pytest_status: int, elapsed: float, leftovers: List[str], strict: bool = False,
               update: bool = False) -> int:
    from vnetct.report import ResultsError
    from vnetct.report.model import load_run

    for line in leftovers:
        print(f"vnetct: the case runner left this behind, cleaned now: {line}", file=sys.stderr)
    if not (run_dir / "results.json").exists():
        print(f"vnetct: no results.json in {run_dir} (pytest exit {pytest_status})", file=sys.stderr)
        return EXIT_USAGE if pytest_status in (2, 4) and not leftovers else EXIT_FAILED
    try:
        results = load_run(run_dir).results
    except ResultsError as error:  # the case runner died mid-write, or something else wrote it
        print(f"vnetct: {error} (pytest exit {pytest_status})", file=sys.stderr)
        return EXIT_FAILED
    judgement, said, unusable = None, [], None
    try:
        judgement, said = expectations.settle(run_dir, results, update=update, strict=strict)
    except expectations.ExpectationsError as error:
        unusable = str(error)
    counts = results.get("summary", {})
    print("")
    print(f"vnetct: {counts.get('passed', 0)} passed, {counts.get('failed', 0)} failed, "
          f"{counts.get('error', 0)} errors, {counts.get('skipped', 0)} skipped in {elapsed:.1f} s")
    _summarise_rules(results)
    _summarise_guests(results)
    for case in results.get("cases", []):
        if case["outcome"] == "skipped" or (judgement is None and case["outcome"] != "passed"):
            print(for_terminal(f"  {case['outcome'].upper():8s} {case['id']}: "
                               f"{expectations.shorten(case.get('reason'))}"))
    for line in said + (expectations.summary_lines(judgement, strict) if judgement else []):
        print(for_terminal(line))
    for problem in results.get("run_problems", []):
        print(for_terminal(f"  PROBLEM  {problem}"))
    report = _write_report(run_dir)
    print(f"vnetct: results.json, junit.xml{' and report.html' if report else ''} in {run_dir}")
    if leftovers:
        return EXIT_FAILED
    if results.get("interrupted"):
        print("vnetct: the run was interrupted; the cases above finished and are kept")
        return EXIT_INTERRUPTED
    if pytest_status == 2 and not results.get("cases"):
        return EXIT_USAGE
    if pytest_status == 5:
        print("vnetct: no case matched the selection", file=sys.stderr)
        return EXIT_USAGE
    if unusable or judgement.problems:
        print(f"vnetct: the expectations file cannot be used: {unusable or 'stale entries (above)'}", file=sys.stderr)
        return EXIT_USAGE
    # pytest exits 1 for any failed case, expected or not: the judgement decides.
    failed_cases = counts.get("failed", 0) + counts.get("error", 0)
    ok = judgement.ok(strict) and not results.get("run_problems") and (
        pytest_status == 0 or (pytest_status == 1 and failed_cases))
    return 0 if ok else EXIT_FAILED


def _sut_label(results: dict) -> str:
    sut = results.get("sut") or {}
    if sut.get("qemu_version"):
        release = sut.get("qemu_release") or {}
        origin = f", release {release['release']} from Debian {' + '.join(release['suites'])}" if release else ""
        return f"QEMU {sut['qemu_version']}{origin}"
    if results.get("profile") == "reference":
        return "the reference model"
    return f"profile {results.get('profile', '?')}"


def _names(case: dict, rule_id: str) -> bool:
    """Whether a failed case's failure counts against `rule_id` (it named it,
    or it comes from a run before failures named rules)."""
    return case["outcome"] == "failed" and rule_id in case.get("violated_rules", [rule_id])


def _summarise_rules(results: dict) -> None:
    """The verdicts per rule on the SUT, and the reference's self-check apart
    (results.json: rules); they do not change the exit status."""
    from vnetct.report.rules_table import counts, table_of

    try:
        table = table_of(results)
        tally = counts(table)
    except (KeyError, TypeError, ValueError) as error:  # a malformed table must not cost the summary
        print(f"vnetct: no verdicts per rule: results.json has a malformed rules table ({error!r})")
        return
    print(f"vnetct: SUT ({_sut_label(results)}): {tally['sut']['conforms']} rules conform, "
          f"{tally['sut']['violated']} violated, {tally['sut']['not-judged']} not judged")
    for entry in table:
        if entry["sut"]["verdict"] == "violated":
            failing = [case["id"] for case in entry["sut"]["cases"] if _names(case, entry["id"])]
            print(f"  VIOLATED {entry['id']}: {', '.join(failing)}")
    reference = tally["reference"]
    line = f"vnetct: reference self-check: {reference['passed']} rules passed, {reference['failed']} failed"
    print(line + (f", {reference['not-run']} not run" if reference["not-run"] else ""))
    for entry in table:
        if entry["reference"]["verdict"] == "failed":
            failing = [case["id"] for case in entry["reference"]["cases"] if _names(case, entry["id"])]
            print(f"  REFERENCE FAILED {entry['id']}: {', '.join(failing)}")


def _write_report(run_dir: Path) -> Optional[Path]:
    """report.html beside results.json; a report problem never changes the
    run's exit status, it is only said."""
    if not (run_dir / "results.json").exists():
        return None
    try:
        from vnetct.report import write_report

        return write_report(run_dir)
    except Exception as error:  # noqa: BLE001 - the run's verdict stands without its report
        print(f"vnetct: could not write report.html: {type(error).__name__}: {error}", file=sys.stderr)
        return None


def command_report(args) -> int:
    try:
        import jinja2  # noqa: F401  # Debian: python3-jinja2
    except ImportError:
        print("vnetct report: python3-jinja2 is missing: ./vnetct setup installs it "
              "(or apt-get install python3-jinja2)", file=sys.stderr)
        return EXIT_SETUP
    from vnetct.report import ResultsError, ThresholdError, write_report

    dirs = args.results_dirs or [paths.OUT / "latest"]
    try:
        path = write_report(dirs[0], dirs[1:], output=args.output, thresholds=args.thresholds)
    except (ResultsError, ThresholdError) as error:
        print(f"vnetct report: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(f"vnetct: report {path} ({path.stat().st_size // 1024} KiB)")
    return 0


def command_list(_args) -> int:
    bootstrap.ensure_packages()
    bootstrap.build_native(targets=("vnetct_native",))
    return subprocess.run([sys.executable, "-m", "pytest", *_case_collection_args(terminal=False),
                           "--collect-only", "--vnetct-list"],
                          cwd=paths.REPO, env=test_cmd.pytest_env(), check=False).returncode


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return command_run(args)
        if args.command == "test":
            return test_cmd.command_test(args)
        if args.command == "list":
            return command_list(args)
        if args.command == "report":
            return command_report(args)
        if args.command == "setup":
            bootstrap.prepare(with_image=True)
            return 0
        if args.command == "certify":
            return certify.command_certify(args)
        if args.command == "matrix":
            return matrix.command_matrix(args)
        if args.command == "selftest":
            return selftest.command_selftest(args)
        if args.command == "prepare-image":
            bootstrap.prepare(with_image=True, targets=("vnetct-guest-agent",), for_images=True)
            bootstrap.require_root()
            return image_prep.command_prepare_image(args)
        if args.command == "check-config":
            bootstrap.ensure_packages()
            bootstrap.build_native(targets=("vnetct_native",))
            return check_config.command_check_config(args)
    except bootstrap.SetupError as error:
        print(f"vnetct: set-up failed: {error}", file=sys.stderr)
        return EXIT_SETUP
    except KeyboardInterrupt:
        print("\nvnetct: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
