"""`vnetct selftest`: proof that the verdicts on the real QEMU path can fail.

It runs the cases each seeded fault targets (vnetct.faults.catalog) twice:
clean (the baseline: they must pass, and their durations are the normal
ones), then with the fault seeded (`vnetct run --fault NAME`). A fault is
caught when some case fails naming the fault's rule (results.json
violated_rules); its time to verdict is the failing case's duration minus
its clean duration. Writes <out>/selftest-<id>/selftest.json (the table,
each run's directory) and prints "caught N of M" per fault.
Exit status: 0 every fault caught with its rule within the time bound, 1 a
fault not caught (a defect of the harness: fix the check, not the fault) or
the baseline failed, 2 bad usage, 3 set-up failed."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Dict, Optional

from vnetct.core import paths
from vnetct.faults.catalog import FAULTS, Fault
from vnetct.setup import bootstrap

# A fault must be judged this soon after the case's normal duration (issue 14).
VERDICT_BOUND_S = 15.0


def add_parser(commands) -> None:
    selftest = commands.add_parser("selftest", help="seed each host fault into real QEMU: each must be caught, "
                                                    "naming its rule", description=__doc__.split("\n\n")[0])
    selftest.add_argument("--fault", action="append", default=[], metavar="NAME",
                          help="only these faults (repeatable; default: all)")
    selftest.add_argument("--quick", action="store_true", help="only the quick subset (./vnetct test runs it)")
    selftest.add_argument("--list", action="store_true", help="print the faults, their rules and cases")
    selftest.add_argument("--qemu", metavar="PATH", default=str(paths.DEFAULT_QEMU), help="QEMU binary under test")
    selftest.add_argument("--out", metavar="DIR", type=Path, default=paths.OUT,
                          help="results root; the selftest gets <DIR>/selftest-<id> (default: %(default)s)")
    selftest.add_argument("--no-setup", action="store_true", help="skip apt/build/image steps (they must be done)")


def say(text: str) -> None:
    print(f"vnetct selftest: {text}", flush=True)


def _run(run_root: Path, keyword: str, qemu: str, fault: Optional[str]) -> dict:
    command = [str(paths.REPO / "vnetct"), "run", "--no-setup", "-j", "1", "--out", str(run_root), "-k", keyword,
               "--qemu", qemu, *(["--fault", fault] if fault else [])]
    started = time.monotonic()
    status = subprocess.run(command, cwd=paths.REPO, check=False, capture_output=True, text=True)
    latest = run_root / "latest"
    results = json.loads((latest.resolve() / "results.json").read_text()) if latest.exists() else {"cases": []}
    return {"command": " ".join(command), "exit": status.returncode, "dir": str(latest.resolve()),
            "wall_s": round(time.monotonic() - started, 1), "cases": results.get("cases", []),
            "output_tail": status.stdout[-2000:] + status.stderr[-1000:]}


def judge(fault: Fault, run: dict, baseline: Dict[str, float]) -> dict:
    """Caught N of M: the cases that failed naming the fault's rule, of those run."""
    ran = [case for case in run["cases"] if case.get("outcome") != "skipped"]
    caught = [case for case in ran if fault.rule in (case.get("violated_rules") or [])]
    other = [case for case in ran if case.get("outcome") in ("failed", "error") and case not in caught]
    delays = {case["id"]: round(case["duration_s"] - baseline[case["id"]], 1) for case in caught
              if case["id"] in baseline}
    late = {case_id: delay for case_id, delay in delays.items() if delay > VERDICT_BOUND_S}
    return {"fault": fault.name, "rule": fault.rule, "bug": fault.bug, "mechanism": fault.mechanism,
            "selection": fault.select, "caught": len(caught), "of": len(ran), "ok": bool(caught) and not late,
            "cases": [{"id": case["id"], "outcome": case["outcome"], "violated_rules": case.get("violated_rules"),
                       "duration_s": case["duration_s"], "beyond_normal_s": delays.get(case["id"]),
                       "reason": (case.get("reason") or "")[:300]} for case in ran],
            "named_other_rules": sorted({rule for case in other for rule in (case.get("violated_rules") or [])}),
            "late": late, "run": {k: run[k] for k in ("command", "exit", "dir", "wall_s")}}


def command_selftest(args) -> int:
    faults = [FAULTS[name] for name in args.fault if name in FAULTS]
    unknown = [name for name in args.fault if name not in FAULTS]
    if unknown:
        print(f"vnetct: --fault {', '.join(unknown)}: unknown; known: {', '.join(FAULTS)}", file=sys.stderr)
        return 2
    faults = faults or [fault for fault in FAULTS.values() if fault.quick or not args.quick]
    if args.list:
        for fault in faults:
            print(f"{fault.name:32} {fault.rule:14} {fault.mechanism:15} -k '{fault.select}'"
                  f"{'  [quick]' if fault.quick else ''}\n    {fault.bug}")
        return 0
    if not args.no_setup:
        bootstrap.prepare(with_image=True, targets=bootstrap.RUN_TARGETS)
    bootstrap.require_root()
    root = args.out.resolve() / f"selftest-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    root.mkdir(parents=True)
    selection = " or ".join(f"({s})" for s in dict.fromkeys(fault.select for fault in faults))
    say(f"{len(faults)} faults; baseline first (clean QEMU): -k '{selection}'; everything in {root}")
    clean = _run(root / "baseline", selection, args.qemu, None)
    baseline = {case["id"]: case["duration_s"] for case in clean["cases"] if case.get("outcome") == "passed"}
    unclean = [case["id"] for case in clean["cases"] if case.get("outcome") in ("failed", "error")]
    say(f"baseline: {len(baseline)} passed, {len(unclean)} failed in {clean['wall_s']} s" +
        (f": {', '.join(unclean)}" if unclean else ""))
    table = []
    for index, fault in enumerate(faults, 1):
        say(f"[{index}/{len(faults)}] {fault.name} -> {fault.rule}: {fault.bug}")
        verdict = judge(fault, _run(root / fault.name, fault.select, args.qemu, fault.name), baseline)
        table.append(verdict)
        delays = [c["beyond_normal_s"] for c in verdict["cases"] if c["beyond_normal_s"] is not None]
        say(f"    {'CAUGHT' if verdict['ok'] else 'NOT CAUGHT'}: {verdict['caught']} of {verdict['of']} cases named "
            f"{fault.rule}" + (f"; time to verdict beyond normal: {max(delays):+.1f} s" if delays else "") +
            (f"; other rules named: {', '.join(verdict['named_other_rules'])}" if verdict["named_other_rules"]
             else "") + f" ({verdict['run']['wall_s']} s)")
    summary = {"qemu": args.qemu, "baseline": {**{k: clean[k] for k in ("command", "exit", "dir", "wall_s")},
                                                "durations_s": baseline, "failed": unclean},
               "verdict_bound_s": VERDICT_BOUND_S, "faults": table,
               "caught": sum(1 for v in table if v["ok"]), "of": len(table)}
    (root / "selftest.json").write_text(json.dumps(summary, indent=2) + "\n")
    from vnetct.report import write_selftest_report
    page = write_selftest_report(root, summary)
    say(f"{summary['caught']} of {summary['of']} faults caught with their rule; {root / 'selftest.json'}, {page}")
    return 0 if summary["caught"] == summary["of"] and not unclean else 1
