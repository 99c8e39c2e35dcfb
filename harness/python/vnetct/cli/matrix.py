"""`vnetct matrix`: the suite on several QEMU releases, one report.

It runs `vnetct run --qemu-release R` for each release, one after the other,
each into <out>/matrix-<id>/<R>/<run-id>/ (its output in <out>/matrix-<id>/<R>.log),
then writes <out>/matrix-<id>/matrix.html and matrix.json (vnetct.report.matrix):
rules x releases, cases x releases, the figures side by side, and what changed
between neighbouring releases. A run that leaves no results.json is shown as
such. With --from LABEL=DIR it renders recorded runs and runs nothing.
Exit status: 0 every release's run exited 0 (its outcomes met its
expectations; --from: the report was written), 1 otherwise, 2 bad usage
(or, with --from, a missing or malformed results.json), 3 set-up,
130 interrupted (the releases done so far are still reported)."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import List, Optional, Tuple

from vnetct.core import paths

DEFAULT_RELEASES = ("7.2", "10.0", "11.1")


def add_parser(commands) -> None:
    matrix = commands.add_parser("matrix", help="run the suite on several QEMU releases and write the release matrix",
                                 description=__doc__.split("\n\n")[0])
    matrix.add_argument("--releases", metavar="R,R,...", default=None,
                        help=f"QEMU releases, as --qemu-release takes them (default: {','.join(DEFAULT_RELEASES)})")
    matrix.add_argument("--from", dest="recorded", action="append", default=[], metavar="LABEL=DIR",
                        help="render recorded runs instead of running: a release label and its run directory "
                             "(repeatable, e.g. --from 7.2=out/matrix-x/7.2/latest)")
    matrix.add_argument("--out", metavar="DIR", type=Path, default=paths.OUT,
                        help="results root; the matrix gets <DIR>/matrix-<id> (default: %(default)s)")
    matrix.add_argument("--no-setup", action="store_true", help="skip apt/build/image steps (they must be done)")
    matrix.add_argument("-k", dest="keyword", metavar="EXPR", help="only matching cases (as vnetct run -k)")
    matrix.add_argument("-j", "--jobs", type=int, default=None, metavar="N", help="lanes per run (as vnetct run -j)")
    matrix.add_argument("--factor", type=float, default=None, metavar="F",
                        help="a figure moved between neighbouring releases when it changed by more than F times "
                             "(default: 2)")


def say(text: str) -> None:
    print(f"vnetct matrix: {text}", flush=True)


def _usage(text: str) -> int:
    print(f"vnetct matrix: {text}", file=sys.stderr)
    return 2


def parse_recorded(entries: List[str]) -> List[Tuple[str, Path]]:
    """--from LABEL=DIR entries; ValueError naming the bad one."""
    runs = []
    for entry in entries:
        label, equals, directory = entry.partition("=")
        if not equals or not label.strip() or not directory.strip():
            raise ValueError(f"--from {entry}: expected LABEL=DIR (e.g. 7.2=out/matrix-x/7.2/latest)")
        runs.append((label.strip(), Path(directory.strip())))
    return runs


def parse_releases(text: Optional[str]) -> List[str]:
    releases = [name.strip() for name in (text or ",".join(DEFAULT_RELEASES)).split(",")]
    if any(not name for name in releases):
        raise ValueError(f"--releases {text}: an empty release name")
    if len(set(releases)) != len(releases):
        raise ValueError(f"--releases {text}: a release is named twice")
    return releases


def folder_name(release: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", release)


def run_command(release: str, run_out: Path, args, first: bool) -> List[str]:
    """The `vnetct run` of one release (the set-up only before the first)."""
    command = [str(paths.REPO / "vnetct"), "run", "--qemu-release", release, "--out", str(run_out)]
    if args.no_setup or not first:
        command.append("--no-setup")
    if args.jobs is not None:
        command += ["-j", str(args.jobs)]
    if args.keyword:
        command += ["-k", args.keyword]
    return command


def _wait(process: subprocess.Popen) -> Tuple[int, bool]:
    """The child's exit status, and whether Ctrl-C was pressed: the run got
    the same SIGINT (same process group) and tears down; it is waited for, a
    second Ctrl-C terminates it."""
    interrupted = False
    while True:
        try:
            return process.wait(), interrupted
        except KeyboardInterrupt:
            if interrupted:
                say("terminating the run")
                process.terminate()
            else:
                say("interrupted: waiting for the run to tear down (Ctrl-C again to hurry)")
            interrupted = True


def run_release(release: str, root: Path, args, first: bool):
    """One release's run: the matrix column (results, or why there are none), and whether Ctrl-C was pressed."""
    from vnetct.report import ResultsError
    from vnetct.report.matrix import Column, load_column

    run_out = root / folder_name(release)
    run_out.mkdir(parents=True, exist_ok=True)
    log = root / f"{folder_name(release)}.log"
    command = run_command(release, run_out, args, first)
    say(f"{release}: {' '.join(command)} (output: {log})")
    started = time.monotonic()
    with open(log, "w") as output:
        process = subprocess.Popen(command, cwd=paths.REPO, stdout=output, stderr=subprocess.STDOUT)
        status, interrupted = _wait(process)
    wall_s = round(time.monotonic() - started, 1)
    latest = run_out / "latest"
    run_dir = latest.resolve() if latest.exists() else None
    if run_dir is None or not (run_dir / "results.json").is_file():
        tail = log.read_text(errors="replace").splitlines()[-15:]
        problem = f"the run left no results.json (exit {status}); its output: {log}"
        say(f"{release}: exit {status} in {wall_s:.1f} s: no results.json; the end of its output:")
        for line in tail:
            print(f"    {line}", flush=True)
        return Column(release, run_dir, None, problem, status, wall_s), interrupted
    try:
        column = load_column(release, run_dir)
    except ResultsError as error:
        say(f"{release}: exit {status} in {wall_s:.1f} s: unusable results: {error}")
        return Column(release, run_dir, None, f"unusable results.json: {error}", status, wall_s), interrupted
    column.exit_status, column.wall_s = status, wall_s
    counts = column.results.get("summary") or {}
    sut = column.results.get("sut") or {}
    say(f"{release}: exit {status} in {wall_s:.1f} s: {counts.get('passed', 0)} passed, {counts.get('failed', 0)} "
        f"failed, {counts.get('error', 0)} errors, {counts.get('skipped', 0)} skipped (QEMU "
        f"{sut.get('qemu_version', '?')}); {run_dir}")
    return column, interrupted


def _report(columns, root: Path, factor: float) -> Optional[Path]:
    from vnetct.report.matrix import write_columns

    path, view = write_columns(columns, root, factor)
    for step in view["changes"]:
        say(f"{step['from']} -> {step['to']}: {len(step['rules'])} rules changed verdict, {len(step['cases'])} "
            f"cases changed outcome, {len(step['figures'])} figures moved more than {factor:g}x"
            + (f" ({len(step['rules_unselected'])} rules and {len(step['only_before']) + len(step['only_after'])} "
               f"cases in one run only: not compared)" if step["rules_unselected"] or step["only_before"]
               or step["only_after"] else ""))
        for change in step["rules"]:
            print(f"  RULE   {change['id']}: {change['from']} -> {change['to']}"
                  + (f" ({', '.join(change['violating'])})" if change["violating"] else ""), flush=True)
        for change in step["cases"]:
            print(f"  CASE   {change['id']}: {change['from']['outcome']} -> {change['to']['outcome']}", flush=True)
        for change in step["figures"]:
            print(f"  FIGURE {change['title']}, {change['case']}: {change['from']:.4g} -> {change['to']:.4g} "
                  f"{change['unit']}", flush=True)
    say(f"{path} and {path.with_name('matrix.json')}")
    return path


def command_matrix(args) -> int:
    try:
        import jinja2  # noqa: F401  # Debian: python3-jinja2
    except ImportError:
        print("vnetct matrix: python3-jinja2 is missing: ./vnetct setup installs it", file=sys.stderr)
        return 3
    from vnetct.report import ResultsError
    from vnetct.report.matrix import DEFAULT_FACTOR, columns_of

    factor = DEFAULT_FACTOR if args.factor is None else args.factor
    if factor <= 1:
        return _usage(f"--factor {args.factor}: must be more than 1")
    if args.jobs is not None and args.jobs < 1:
        return _usage(f"--jobs {args.jobs}: must be at least 1")
    try:
        recorded = parse_recorded(args.recorded)
        releases = parse_releases(args.releases)
    except ValueError as error:
        return _usage(str(error))
    root = args.out.resolve() / f"matrix-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    if recorded:
        if args.releases or args.keyword or args.jobs is not None:
            return _usage("--from renders recorded runs: it takes no --releases, -k or -j")
        try:
            columns = columns_of(recorded)
        except ResultsError as error:
            return _usage(str(error))
        root.mkdir(parents=True)
        _report(columns, root, factor)
        return 0
    root.mkdir(parents=True)
    say(f"{len(releases)} releases, one after the other: {', '.join(releases)}; everything in {root}")
    columns = []
    for index, release in enumerate(releases):
        column, interrupted = run_release(release, root, args, first=index == 0)
        columns.append(column)
        if interrupted or column.exit_status in (130, 143) or (column.exit_status or 0) < 0:
            say(f"stopped after {release}: the run was interrupted; the releases done so far are reported")
            _report(columns, root, factor)
            return 130
    _report(columns, root, factor)
    failed = [column.label for column in columns if column.exit_status != 0]
    for column in columns:
        say(f"{column.label}: exit {column.exit_status}, {column.wall_s:.1f} s"
            + (f": {column.problem}" if column.problem else ""))
    if failed:
        say(f"not every release met its expectations: {', '.join(failed)} (see each run's summary)")
        return 1
    say("every release's run exited 0")
    return 0
