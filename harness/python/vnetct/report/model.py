"""From results.json to what the templates show: the run's verdict and SUT,
each case with its links, figures and pictures, and the comparison of runs.
results.json is the only input (the files beside it are linked, never read)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional
from urllib.parse import quote

from . import certification, charts, rules_table
from .validate import ResultsError, check_results

# SUT fields in the order a reader looks for them; others follow as they come.
SUT_LABELS = [
    ("qemu_version", "QEMU version"), ("qemu_binary", "QEMU binary"), ("qemu_release", "QEMU release"), ("accelerator", "Accelerator"),
    ("machine", "Machine type"), ("nic_models", "NIC models"), ("guest_kernel", "Guest kernel"),
    ("host_kernel", "Host kernel"), ("guest_image_digest", "Guest image digest"),
]
OUTCOME_ORDER = {"failed": 0, "error": 1, "skipped": 2, "passed": 3}


@dataclass
class Run:
    run_dir: Path
    results: Dict[str, Any]
    sha256: str = ""
    cases: List[dict] = field(default_factory=list)


def load_run(run_dir: Path) -> Run:
    run_dir = Path(run_dir)
    path = run_dir / "results.json" if run_dir.is_dir() else run_dir
    if not path.exists():
        raise ResultsError(f"{path}: no such file (give a run directory holding results.json)")
    try:
        results = json.loads(path.read_text())
    except OSError as error:
        raise ResultsError(f"{path}: cannot read it ({error.strerror or error})") from error
    except ValueError as error:
        raise ResultsError(f"{path}: not valid JSON ({error})") from error
    except RecursionError as error:
        raise ResultsError(f"{path}: nested too deeply to read (more than Python's recursion limit)") from error
    if not isinstance(results, dict):
        raise ResultsError(f"{path}: not a vnetct results file (schema vnetct-results/1): "
                           f"the top level is no JSON object")
    check_results(results, path)
    return Run(path.parent, results, certification.file_sha256(path), list(results.get("cases", [])))


def _parse_time(text: Optional[str]) -> Optional[datetime]:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def run_seconds(results: dict) -> Optional[float]:
    started, finished = _parse_time(results.get("started")), _parse_time(results.get("finished"))
    return (finished - started).total_seconds() if started and finished else None


def summary(results: dict) -> Dict[str, int]:
    counts = {outcome: 0 for outcome in ("passed", "failed", "skipped", "error")}
    for case in results.get("cases", []):
        counts[case.get("outcome", "error")] = counts.get(case.get("outcome", "error"), 0) + 1
    counts["total"] = len(results.get("cases", []))
    return counts


def _failure(case: dict) -> bool:
    return case.get("outcome") in ("failed", "error")


def verdict(results: dict) -> Dict[str, str]:
    """The run's word: results.json `expectations` (when the run was compared
    with its SUT release's expectations) tells expected failures from new ones."""
    counts = summary(results)
    judged = results.get("expectations") if isinstance(results.get("expectations"), dict) else {}
    cases = results.get("cases", [])
    expected = sum(1 for case in cases if _failure(case) and case.get("expected") is True)
    unexpected_passes = len(judged.get("unexpected_passes") or [])
    passes_note = (f" {unexpected_passes} unexpected passes: the deviation may be fixed (update "
                   f"{judged.get('file')})." if unexpected_passes else "")
    if results.get("interrupted"):
        return {"word": "interrupted", "css": "bad", "text": "Interrupted: the finished cases are shown."}
    if results.get("finished") is None:
        return {"word": "incomplete", "css": "bad",
                "text": "The run has not finished (still running, or killed): the finished cases are shown."}
    new = counts["failed"] + counts["error"] - expected
    strict_fail = judged.get("strict") and unexpected_passes
    if new or results.get("run_problems") or judged.get("problems") or strict_fail:
        text = f"{counts['failed']} failed, {counts['error']} errors"
        if expected:
            text += f" ({expected} of them expected: known deviations of {judged.get('release')}, {new} new)"
        if results.get("run_problems"):
            text += f", {len(results['run_problems'])} run problems"
        if judged.get("problems"):
            text += f", a stale expectations file ({judged.get('file')})"
        return {"word": "failed", "css": "bad", "text": text + "." + passes_note}
    if not counts["total"]:
        return {"word": "empty", "css": "bad", "text": "No case ran."}
    if expected:
        return {"word": "as expected", "css": "good",
                "text": f"Every outcome as expected: {expected} failures are known deviations of "
                        f"{judged.get('release')} ({judged.get('file')}), none is new." + passes_note}
    return {"word": "passed", "css": "good", "text": "Every selected case passed (skips give their reason)." + passes_note}


def _display(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_display(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_display(v) for v in value) or "none"
    return "" if value is None else str(value)


def sut_rows(sut: dict) -> List[dict]:
    rows = []
    for key, label in SUT_LABELS:
        if key == "accelerator" and isinstance(sut.get(key), dict):
            accelerator = sut[key]
            rows.append({"label": label, "value": f"{accelerator.get('name', '?')} (cpu {accelerator.get('cpu', '?')})",
                         "note": accelerator.get("reason"), "missing": False})
        elif key in sut:
            rows.append({"label": label, "value": _display(sut[key]), "note": None, "missing": False})
        elif key == "nic_models":
            rows.append({"label": label, "value": "not recorded in results.json", "note": None, "missing": True})
    known = {key for key, _ in SUT_LABELS}
    rows += [{"label": key.replace("_", " ").capitalize(), "value": _display(value), "note": None, "missing": False}
             for key, value in sut.items() if key not in known]
    return rows


def anchor(case_id: str) -> str:
    return "case-" + re.sub(r"[^A-Za-z0-9]+", "-", case_id).strip("-")


def _href(run_dir: Path, relative: str, output_dir: Path) -> str:
    target = os.path.relpath(run_dir / relative, output_dir)
    return quote(Path(target).as_posix())


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.0f}"
    return _display(value)


def case_view(case: dict, run_dir: Path, output_dir: Path) -> dict:
    artifacts = []
    for name, relative in (case.get("artifacts") or {}).items():
        artifacts.append({"name": name, "path": relative, "href": _href(run_dir, relative, output_dir),
                          "exists": (run_dir / relative).exists()})
    metrics = []
    for name, measured in (case.get("metrics") or {}).items():
        value = measured.get("value") if isinstance(measured, dict) else measured
        metrics.append({"name": name, "value": _number(value), "unit": (measured.get("unit", "")
                                                                        if isinstance(measured, dict) else ""),
                        "numeric": isinstance(value, (int, float)) and not isinstance(value, bool)})
    details = case.get("details") or ""
    timeline = case.get("timeline") if isinstance(case.get("timeline"), dict) else None
    series = case.get("series") if isinstance(case.get("series"), dict) else None
    problems = list(case.get("record_problems") or [])
    try:
        timeline_view = charts.timeline_view(timeline)
        series_view = charts.series_view(series, timeline)
    except (KeyError, TypeError, ValueError) as error:  # a malformed picture must not cost the report
        timeline_view = series_view = None
        problems.append(f"the report could not draw this case's timeline or series: {type(error).__name__}: {error}")
    return {
        "id": case.get("id", "?"), "anchor": anchor(case.get("id", "?")), "nodeid": case.get("nodeid", ""),
        "outcome": case.get("outcome", "error"), "reason": case.get("reason"),
        "duration_s": case.get("duration_s"), "rules": case.get("rules") or [],
        "expectation": case.get("expectation") if isinstance(case.get("expectation"), dict) else None,
        "expected_failure": _failure(case) and case.get("expected") is True,
        "new_failure": _failure(case) and case.get("expected") is False,
        "unexpected_pass": case.get("outcome") == "passed" and case.get("expected") is False,
        "unexpected": case.get("unexpected"), "lane": case.get("lane"), "started": case.get("started"),
        "violated_rules": case.get("violated_rules"),
        "metrics": metrics, "steps": case.get("steps") or [], "artifacts": artifacts,
        "details_tail": details[-4000:], "details_cut": len(details) > 4000,
        "violations": [v for v in case.get("violations") or [] if isinstance(v, dict)],
        "log_tails": {name: text for name, text in (case.get("log_tails") or {}).items() if isinstance(text, str)},
        "timeline": timeline_view, "timeline_events": timeline, "series": series_view,
        "record_problems": problems,
        "second_opinions": [{"name": name, **opinion} for name, opinion in (case.get("second_opinions") or {}).items()
                            if isinstance(opinion, dict)],
    }


def _evidence_view(cases: List[dict]) -> List[dict]:
    return [{"id": case.get("id", "?"), "anchor": anchor(case.get("id", "?")),
             "outcome": case.get("outcome", "error"), "reason": case.get("reason"),
             "expected": case.get("expected"), "finding": case.get("finding")} for case in cases]


def rules_view(results: dict) -> dict:
    """The rules table: from results.json's `rules`, or, for runs written
    before it existed, computed from the cases (over the rules they cite)."""
    stored = isinstance(results.get("rules"), list)
    try:
        table = rules_table.table_of(results)
        tally = rules_table.counts(table)
    except (KeyError, TypeError, ValueError) as error:  # a malformed table must not cost the report
        return {"rows": [], "counts": None, "violated": [],
                "note": f"results.json has a malformed rules table ({error!r})"}
    rows = []
    for entry in table:
        sut, reference = entry.get("sut") or {}, entry.get("reference") or {}
        rule_id = entry.get("id", "?")
        rows.append({"id": rule_id, "anchor": "rule-" + re.sub(r"[^A-Za-z0-9]+", "-", rule_id),
                     "area": entry.get("area"), "sentence": entry.get("sentence", ""),
                     "sut": {"verdict": sut.get("verdict", "not-judged"), "attribution": sut.get("attribution"),
                             "reasons": sut.get("reasons") or [], "cases": _evidence_view(sut.get("cases") or [])},
                     "reference": {"verdict": reference.get("verdict", "not-run"),
                                   "reasons": reference.get("reasons") or [],
                                   "cases": _evidence_view(reference.get("cases") or [])}})
    note = None if stored else ("results.json has no rules table (written before vnetct recorded one): computed "
                                "from its cases, over the rules they cite; cases without a subject count as SUT cases")
    return {"rows": rows, "counts": tally, "note": note,
            "violated": [row for row in rows if row["sut"]["verdict"] == "violated"]}


def run_view(run: Run, output_dir: Path, limits: Dict[str, float]) -> dict:
    results = run.results
    cases = [case_view(case, run.run_dir, output_dir) for case in run.cases]
    return {
        "run_id": results.get("run_id", run.run_dir.name), "profile": results.get("profile", "?"),
        "command": results.get("command", ""), "started": results.get("started"),
        "finished": results.get("finished"), "seconds": run_seconds(results),
        "case_seconds": sum(float(c.get("duration_s") or 0) for c in run.cases),
        "interrupted": bool(results.get("interrupted")), "run_problems": results.get("run_problems") or [],
        "lanes": results.get("lanes") or [], "summary": summary(results), "verdict": verdict(results),
        "sut": sut_rows(results.get("sut") or {}), "schema": results.get("schema", "?"),
        "rules": rules_view(results),
        "results_sha256": run.sha256, "results_path": _href(run.run_dir, "results.json", output_dir),
        "fingerprint": certification.environment_fingerprint(results),
        "certification": certification.figures(run.cases, limits),
        "cases": cases, "expectations": results.get("expectations") or None,
        "expected_failures": [c for c in cases if c["expected_failure"]],
        "new_failures": [c for c in cases if c["new_failure"]],
        "unexpected_passes": [c for c in cases if c["unexpected_pass"]],
        "junit_href": _href(run.run_dir, "junit.xml", output_dir),
        "has_junit": (run.run_dir / "junit.xml").exists(),
    }


def comparison_view(runs: List[Run]) -> Optional[dict]:
    """Runs side by side: outcomes per case, and the certification figures and
    durations per case as bars, one per run."""
    if len(runs) < 2:
        return None
    headers = [{"run_id": r.results.get("run_id", r.run_dir.name), "profile": r.results.get("profile", "?"),
                "qemu": (r.results.get("sut") or {}).get("qemu_version", "-"),
                "accelerator": ((r.results.get("sut") or {}).get("accelerator") or {}).get("name", "-")
                if isinstance((r.results.get("sut") or {}).get("accelerator"), dict) else "-",
                "summary": summary(r.results), "seconds": run_seconds(r.results), "started": r.results.get("started")}
               for r in runs]
    case_ids: List[str] = []
    for run in runs:
        case_ids += [c["id"] for c in run.cases if c["id"] not in case_ids]
    by_run = [{c["id"]: c for c in run.cases} for run in runs]
    outcomes = []
    for case_id in case_ids:
        cells = [by_run[i].get(case_id) for i in range(len(runs))]
        changed = len({c.get("outcome") if c else None for c in cells}) > 1
        outcomes.append({"id": case_id, "anchor": anchor(case_id), "changed": changed,
                         "cells": [{"outcome": c.get("outcome") if c else None,
                                    "duration_s": c.get("duration_s") if c else None} for c in cells]})
    figures = []
    for case_id in case_ids:
        cases = [by_run[i].get(case_id) for i in range(len(runs))]
        for name, spec in certification.FIGURES.items():
            per_metric: Dict[str, List[Optional[float]]] = {}
            for index, case in enumerate(cases):
                for metric, value in (certification.figure_values(case, name) if case else {}).items():
                    per_metric.setdefault(metric, [None] * len(runs))[index] = value
            for metric, values in per_metric.items():
                figures.append({"case": case_id, "figure": spec["title"], "metric": metric, "unit": spec["unit"],
                                "values": values, "bars": charts.bars_view(values)})
        durations = [by_run[i][case_id].get("duration_s") if case_id in by_run[i] else None
                     for i in range(len(runs))]
        figures.append({"case": case_id, "figure": "Case duration", "metric": "duration_s", "unit": "s",
                        "values": durations, "bars": charts.bars_view(durations)})
    return {"runs": headers, "outcomes": outcomes, "figures": figures}


def sorted_index(cases: List[dict]) -> List[dict]:
    """The case index: problems first, then in run order."""
    return sorted(cases, key=lambda c: OUTCOME_ORDER.get(c["outcome"], 0))
