"""`vnetct run --repeat N`: the same run N times, and every case whose outcome
changed between runs (a flaky verdict is a defect of the harness or a finding
about the SUT; either way it is reported, not averaged away).

Each run is a `vnetct run` of its own under <out>/repeat-<id>/runs/; the
comparison goes to <out>/repeat-<id>/repeat.json. Exit 0 when no outcome
changed (failures that repeat every time are the runs' own business: see
their results), 1 when one did or when a run left no results (it is reported
and not compared; an interrupted or killed run ends the repetition)."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from datetime import datetime
from typing import Dict, List

from vnetct.core import paths


def _without_repeat(argv: List[str]) -> List[str]:
    out, skip = [], False
    for word in argv:
        if skip:
            skip = False
            continue
        if word == "--repeat":
            skip = True
            continue
        if word.startswith("--repeat="):
            continue
        out.append(word)
    return out


def flips(runs: List[Dict[str, str]]) -> Dict[str, List[str]]:
    """{case id: its outcome in each run} for the cases whose outcome changed
    (a case missing from a run counts as 'absent')."""
    ids = sorted({case_id for run in runs for case_id in run})
    table = {case_id: [run.get(case_id, "absent") for run in runs] for case_id in ids}
    return {case_id: outcomes for case_id, outcomes in table.items() if len(set(outcomes)) > 1}


def command_repeat(args, argv: List[str]) -> int:
    root = args.out.resolve() / f"repeat-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    runs_root = root / "runs"
    runs_root.mkdir(parents=True)
    base = [str(paths.REPO / "vnetct"), "run", *_without_repeat(argv)]
    outcomes: List[Dict[str, str]] = []
    record = []
    for index in range(1, args.repeat + 1):
        command = base + ["--out", str(runs_root)] + (["--no-setup"] if index > 1 and not args.no_setup else [])
        print(f"vnetct repeat: run {index}/{args.repeat}: {' '.join(command)}", flush=True)
        started = time.monotonic()
        status = subprocess.run(command, cwd=paths.REPO, check=False).returncode
        wall_s = round(time.monotonic() - started, 1)
        latest = runs_root / "latest"
        run_dir = latest.resolve() if latest.exists() else None
        fresh = run_dir is not None and str(run_dir) not in {run["dir"] for run in record}
        if not fresh or not (run_dir / "results.json").is_file():
            # A run that died before writing its results (a signal, a crash): it is no evidence
            # either way, and comparing it would flip every case; it is reported, not compared.
            record.append({"index": index, "exit": status, "dir": str(run_dir) if fresh else None,
                           "wall_s": wall_s, "summary": None, "incomplete": "the run wrote no results.json"})
            print(f"vnetct repeat: run {index} wrote no results.json (exit {status}): not compared", flush=True)
        else:
            results = json.loads((run_dir / "results.json").read_text())
            outcomes.append({case["id"]: case["outcome"] for case in results.get("cases", [])})
            record.append({"index": index, "exit": status, "dir": str(run_dir), "wall_s": wall_s,
                           "summary": results.get("summary")})
        if status in (130, 143) or status < 0:  # interrupted or killed: stop repeating
            break
    changed = flips(outcomes)
    (root / "repeat.json").write_text(json.dumps({"command": " ".join(["./vnetct", *argv]), "runs": record,
                                                  "flips": changed}, indent=2) + "\n")
    for run in record:
        print(f"vnetct repeat: run {run['index']}: exit {run['exit']}, {run['wall_s']} s, {run['summary']}, "
              f"{run['dir']}")
    if changed:
        print(f"vnetct repeat: {len(changed)} cases changed outcome across {len(record)} runs:")
        for case_id, seen in changed.items():
            print(f"  {case_id}: {' '.join(seen)}")
    else:
        print(f"vnetct repeat: no case changed outcome across {len(record)} runs")
    incomplete = [run["index"] for run in record if run.get("incomplete")]
    if incomplete:
        print(f"vnetct repeat: runs {', '.join(map(str, incomplete))} left no results: the repetition is incomplete")
    print(f"vnetct repeat: {root / 'repeat.json'}")
    return 1 if changed or incomplete or len(record) < args.repeat else 0
