"""Running the cases in parallel lanes: one pytest process per lane, each on
a disjoint set of case files, its own run sub-directory and name prefix; the
lanes' results are merged into the run's results.json and junit.xml.

Files that share a session-scoped VM (they use the `failover_pair` fixture)
stay in one lane, so that VM boots once. Lanes are balanced by the file
durations of the previous run when there is one."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Dict, List, Optional

from vnetct.core import paths
from vnetct.report.results import Results

SHARED_FIXTURES = ("failover_pair",)


def case_files() -> List[Path]:
    return sorted(p for p in paths.CASES.rglob("*.py") if p.name != "conftest.py")


def _units(files: List[Path]) -> List[List[Path]]:
    """Files that must run in one process (a shared session VM) form one unit."""
    shared = [f for f in files if any(name in f.read_text() for name in SHARED_FIXTURES)]
    units = [shared] if shared else []
    units += [[f] for f in files if f not in shared]
    return units


def _previous_durations(previous: Optional[Path]) -> Dict[str, float]:
    durations: Dict[str, float] = {}
    if previous is None:
        return durations
    try:
        results = json.loads((previous / "results.json").read_text())
    except (OSError, ValueError):
        return durations
    for case in results.get("cases", []):
        file = case["nodeid"].split("::", 1)[0]
        durations[file] = durations.get(file, 0.0) + float(case.get("duration_s", 0.0))
    return durations


def previous_run(out: Path, profile: str) -> Optional[Path]:
    """The newest finished run of the same profile under `out`, if any."""
    for run_dir in sorted((p for p in out.glob("2*") if p.is_dir()), reverse=True):
        try:
            results = json.loads((run_dir / "results.json").read_text())
        except (OSError, ValueError):
            continue
        if results.get("profile") == profile and results.get("finished"):
            return run_dir
    return None


def plan(jobs: int, previous: Optional[Path]) -> List[List[Path]]:
    """Split the case files into at most `jobs` lanes of similar expected time."""
    durations = _previous_durations(previous)
    units = _units(case_files())

    def weight(unit: List[Path]) -> float:
        return sum(durations.get(str(f.relative_to(paths.REPO)), 10.0) for f in unit)

    lanes: List[List[Path]] = [[] for _ in range(max(1, jobs))]
    loads = [0.0] * len(lanes)
    for unit in sorted(units, key=weight, reverse=True):
        lightest = loads.index(min(loads))
        lanes[lightest] += unit
        loads[lightest] += weight(unit)
    return [sorted(lane) for lane in lanes if lane]


def run_lanes(commands: List[List[str]], cwd: Path, env: dict) -> List[int]:
    """Runs the lane processes at once, printing their lines with a lane tag;
    returns their exit statuses. Ctrl-C reaches them all (same process group)."""
    processes = [subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, bufsize=1) for command in commands]
    lock = threading.Lock()

    def pump(index: int, process: subprocess.Popen) -> None:
        tag = f"[{chr(ord('A') + index)}] " if len(processes) > 1 else ""
        for line in process.stdout:
            with lock:
                sys.stdout.write(tag + line)
                sys.stdout.flush()

    readers = [threading.Thread(target=pump, args=(i, p), daemon=True) for i, p in enumerate(processes)]
    for reader in readers:
        reader.start()
    statuses = []
    interrupts = 0
    for process in processes:
        while True:
            try:
                statuses.append(process.wait())
                break
            except KeyboardInterrupt:
                interrupts += 1
                print("\nvnetct: interrupted; tearing down (finished cases are kept; Ctrl-C again to hurry)"
                      if interrupts == 1 else "\nvnetct: stopping the case runners", flush=True)
                for other in processes:
                    if interrupts == 2:
                        other.terminate()
                    elif interrupts > 2:
                        other.kill()
    for reader in readers:
        reader.join(timeout=5)
    return statuses


def merge(run_dir: Path, lane_dirs: List[Path]) -> Optional[dict]:
    """One results.json and junit.xml for the run from the lanes' own."""
    parts = []
    for lane_dir in lane_dirs:
        try:
            parts.append((lane_dir, json.loads((lane_dir / "results.json").read_text())))
        except (OSError, ValueError):
            continue
    if not parts:
        return None
    header = {key: value for key, value in parts[0][1].items()
              if key in ("run_id", "profile", "command", "sut")}
    header["run_id"] = run_dir.name
    header["lanes"] = [lane_dir.name for lane_dir, _ in parts]
    # The lanes know the same rules; their tables carry them (older lanes: none, then only the cited ones).
    known = [rule for rule in parts[0][1].get("rules") or [] if isinstance(rule, dict) and "id" in rule]
    merged = Results(run_dir, header, rules=known)
    merged.data["started"] = min(part["started"] for _, part in parts)
    merged.data["interrupted"] = any(part.get("interrupted") for _, part in parts)
    merged.data["run_problems"] = [problem for _, part in parts for problem in part.get("run_problems", [])]
    if all("collected" in part for _, part in parts):  # the lanes' case files together: the suite
        merged.data["collected"] = [case_id for _, part in parts for case_id in part["collected"]]
    ordered = []
    for lane_dir, part in parts:
        if part.get("sut"):
            models = merged.data.get("sut", {}).get("nic_models", [])
            merged.data["sut"] = dict(part["sut"])
            merged.data["sut"]["nic_models"] = models + [m for m in part["sut"].get("nic_models", [])
                                                         if m not in models]
        for index, case in enumerate(part.get("cases", [])):
            case = dict(case)
            case["artifacts"] = {name: f"{lane_dir.name}/{path}" for name, path in case["artifacts"].items()}
            case["lane"] = lane_dir.name
            ordered.append(((case["nodeid"].split("::", 1)[0], index), case))
    # By file, and within a file in the order its lane ran the cases.
    merged.data["cases"] = [case for _, case in sorted(ordered, key=lambda pair: pair[0])]
    finished = [part.get("finished") for _, part in parts]
    merged.write(finished=all(finished))
    merged.write_junit()
    return merged.data
