"""The release matrix: several runs of the suite, each on one QEMU release,
side by side (`./vnetct matrix`, reports/REPORT.md: the release matrix).

From the runs' results.json alone (no QEMU, no native module):
- rules x releases: each rule's verdict on the SUT per release, from that
  run's rules table, with the cases whose failure counts against it;
- cases x releases: the outcome, whether it was expected (once the run was
  compared with its release's expectations), the rules a failure named;
- the certification figures side by side (per case, the median of its values);
- what changed between neighbouring releases (ordered by QEMU version): rules
  whose verdict changed, cases whose outcome (or named rules) changed, and
  figures that moved by more than a stated factor.

    load_column(label, run_dir)          -> Column (ResultsError if unusable)
    matrix_view(columns, output_dir)     -> the view (also written as matrix.json)
    write_matrix([(label, dir)], output) -> output/matrix.html, output/matrix.json
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from vnetct.core.atomic_file import write_atomically

from . import certification, model, rules_table
from .model import ResultsError
from .validate import fail as _fail

SCHEMA = "vnetct-matrix/1"
MATRIX_HTML, MATRIX_JSON = "matrix.html", "matrix.json"
# A figure "moved" between neighbouring releases when the larger median is more
# than this many times the smaller (from zero to a non-zero value counts too).
DEFAULT_FACTOR = 2.0
OUTCOMES = ("passed", "failed", "skipped", "error")
ABSENT = "absent"  # a case or rule the run did not have (-k, another suite, an interrupted run)
NO_RESULTS = "no-results"  # the whole release: its run left no usable results.json
_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass
class Column:
    """One release of the matrix: its label, its run directory, and its
    results (None when the run left none; `problem` then says why)."""
    label: str
    run_dir: Optional[Path]
    results: Optional[dict]
    problem: Optional[str] = None
    exit_status: Optional[int] = None
    wall_s: Optional[float] = None
    sha256: str = ""


# --- reading and checking results.json ---------------------------------------------------

def check_results(results: dict, path: Path) -> None:
    """The fields the matrix reads, checked: ResultsError naming the file and
    the field. Optional fields (expected, expectation, metrics) may be absent."""
    if not isinstance(results.get("cases"), list):
        raise _fail(path, "cases", "missing or not a list")
    for index, case in enumerate(results["cases"]):
        where = f"cases[{index}]"
        if not isinstance(case, dict):
            raise _fail(path, where, "not an object")
        if not isinstance(case.get("id"), str) or not case["id"]:
            raise _fail(path, f"{where}.id", "missing or not a string")
        if case.get("outcome") not in OUTCOMES:
            raise _fail(path, f"{where}.outcome", f"{case.get('outcome')!r} is not one of {', '.join(OUTCOMES)}")
        for name, kind in (("rules", list), ("violated_rules", list), ("metrics", dict)):
            if case.get(name) is not None and not isinstance(case[name], kind):
                raise _fail(path, f"{where}.{name}", f"not a {'list' if kind is list else 'JSON object'}")
        if "expected" in case and not isinstance(case["expected"], bool):
            raise _fail(path, f"{where}.expected", f"{case['expected']!r} is not true or false")
    rules = results.get("rules")
    if rules is not None:
        if not isinstance(rules, list):
            raise _fail(path, "rules", "not a list")
        for index, entry in enumerate(rules):
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
                raise _fail(path, f"rules[{index}].id", "missing or not a string")
            side = entry.get("sut")
            if not isinstance(side, dict) or side.get("verdict") not in (rules_table.CONFORMS, rules_table.VIOLATED,
                                                                          rules_table.NOT_JUDGED):
                raise _fail(path, f"rules[{index}].sut.verdict", "missing or not conforms, violated or not-judged")
            if not isinstance(side.get("cases", []), list):
                raise _fail(path, f"rules[{index}].sut.cases", "not a list")
    if results.get("sut") is not None and not isinstance(results["sut"], dict):
        raise _fail(path, "sut", "not a JSON object")


def load_column(label: str, run_dir: Path) -> Column:
    """One release from its run directory (or results.json); ResultsError when
    the file is missing, not JSON, or a field the matrix reads is malformed."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        where = run_dir if run_dir.suffix == ".json" else run_dir / "results.json"
        raise ResultsError(f"{where}: no such file (give a run directory holding results.json)")
    run = model.load_run(run_dir)
    check_results(run.results, run.run_dir / "results.json")
    return Column(label, run.run_dir, run.results, sha256=run.sha256)


# --- ordering ----------------------------------------------------------------------------

def version_of(column: Column) -> Optional[Tuple[int, int, int]]:
    """The QEMU version the run recorded (sut.qemu_version, "10.0.2 (Debian
    ...)"), else the one its label names ("7.2"); None if neither has one."""
    sut = (column.results or {}).get("sut") or {}
    for text in (sut.get("qemu_version"), column.label):
        match = _VERSION.search(str(text or ""))
        if match:
            return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)
    return None


def ordered(columns: Sequence[Column]) -> List[Column]:
    """By QEMU version, oldest first; columns without a version keep their
    given order after the others."""
    indexed = list(enumerate(columns))
    return [column for _, column in sorted(indexed, key=lambda item: (version_of(item[1]) is None,
                                                                      version_of(item[1]) or (0, 0, 0), item[0]))]


# --- the view ----------------------------------------------------------------------------

def _anchor(prefix: str, name: str) -> str:
    return f"{prefix}-" + re.sub(r"[^A-Za-z0-9.]+", "-", name).strip("-")


def _href(column: Column, name: str, output_dir: Path) -> Optional[str]:
    if column.run_dir is None or not (column.run_dir / name).exists():
        return None
    return model._href(column.run_dir, name, output_dir)


def _expectations(results: dict) -> Optional[dict]:
    judged = results.get("expectations")
    if not isinstance(judged, dict):
        return None
    return {"applied": judged.get("applied"), "file": judged.get("file"), "why": judged.get("why"),
            **{key: len(judged.get(key) or []) for key in ("expected_failures", "new_failures",
                                                           "unexpected_passes")}}


def release_header(column: Column, output_dir: Path) -> dict:
    header: Dict[str, Any] = {"label": column.label, "anchor": _anchor("release", column.label), "run_dir": str(column.run_dir) if column.run_dir else None,
                              "problem": column.problem, "exit": column.exit_status, "wall_s": column.wall_s,
                              "results_sha256": column.sha256,
                              "version": ".".join(map(str, version_of(column) or ())) or None}
    if column.results is None:
        return {**header, "state": NO_RESULTS}
    results = column.results
    sut = results.get("sut") or {}
    release = sut.get("qemu_release") if isinstance(sut.get("qemu_release"), dict) else {}
    table = rules_table.table_of(results)
    return {**header, "state": "results", "run_id": results.get("run_id", column.run_dir.name),
            "profile": results.get("profile"), "qemu_version": sut.get("qemu_version"),
            "package_version": release.get("package_version"), "suites": release.get("suites") or [],
            "accelerator": (sut.get("accelerator") or {}).get("name") if isinstance(sut.get("accelerator"), dict)
            else None,
            "summary": model.summary(results), "verdict": model.verdict(results), "seconds": model.run_seconds(results),
            "rule_counts": rules_table.counts(table)["sut"], "expectations": _expectations(results),
            "results_href": _href(column, "results.json", output_dir),
            "report_href": _href(column, "report.html", output_dir)}


def _rule_cells(columns: Sequence[Column]) -> Tuple[List[str], Dict[str, dict], List[Dict[str, dict]]]:
    """Rule ids in table order (the union over the runs), their sentences,
    and per column {rule id: table entry}."""
    order: List[str] = []
    about: Dict[str, dict] = {}
    per_column = []
    for column in columns:
        entries = {entry["id"]: entry for entry in rules_table.table_of(column.results)} if column.results else {}
        for rule_id, entry in entries.items():
            if rule_id not in about:
                order.append(rule_id)
                about[rule_id] = {"area": entry.get("area"), "sentence": entry.get("sentence", "")}
        per_column.append(entries)
    return order, about, per_column


def _rule_cell(column: Column, entry: Optional[dict]) -> dict:
    if column.results is None:
        return {"verdict": NO_RESULTS, "violating": [], "unselected": False, "expected": None, "reasons": []}
    if entry is None:
        return {"verdict": ABSENT, "violating": [], "unselected": True, "expected": None,
                "reasons": ["not in this run's rules table"]}
    side = entry.get("sut") or {}
    violating = rules_table.violating_cases(entry)
    cases = {case["id"]: case for case in column.results.get("cases") or []}
    flags = [cases.get(case_id, {}).get("expected") for case_id in violating]
    reasons = [str(reason) for reason in side.get("reasons") or []]
    return {"verdict": side.get("verdict", rules_table.NOT_JUDGED), "violating": violating,
            # not judged because the run selected no case citing it (-k): no evidence either way
            "unselected": reasons == [rules_table.NO_CASE_SELECTED],
            # every violation expected by the release's expectations (None: the run was not compared)
            "expected": (all(flags) if all(isinstance(flag, bool) for flag in flags) else None) if flags else None,
            "reasons": reasons[:3]}


def rules_rows(columns: Sequence[Column]) -> List[dict]:
    order, about, per_column = _rule_cells(columns)
    rows = []
    for rule_id in order:
        cells = [_rule_cell(column, entries.get(rule_id)) for column, entries in zip(columns, per_column)]
        rows.append({"id": rule_id, "anchor": _anchor("rule", rule_id), **about[rule_id], "cells": cells,
                     "changed": len({cell["verdict"] for cell in cells if cell["verdict"] != NO_RESULTS}) > 1})
    return rows


def _case_cell(column: Column, case: Optional[dict]) -> dict:
    if column.results is None or case is None:
        return {"outcome": NO_RESULTS if column.results is None else ABSENT, "expected": None, "violated_rules": [],
                "finding": None, "reason": None, "duration_s": None}
    expectation = case.get("expectation") if isinstance(case.get("expectation"), dict) else {}
    reason = str(case.get("reason") or "")
    return {"outcome": case["outcome"], "expected": case.get("expected") if isinstance(case.get("expected"), bool)
            else None, "violated_rules": list(case.get("violated_rules") or []),
            "finding": expectation.get("finding") or case.get("known_finding"),
            "reason": reason if len(reason) <= 300 else reason[:300] + " ...", "duration_s": case.get("duration_s")}


def _case_key(cell: dict) -> Tuple[str, Tuple[str, ...]]:
    return cell["outcome"], tuple(sorted(cell.get("violated_rules") or ()))


def cases_rows(columns: Sequence[Column]) -> List[dict]:
    order: List[str] = []
    cited: Dict[str, List[str]] = {}
    subjects: Dict[str, str] = {}
    by_column = []
    for column in columns:
        cases = {case["id"]: case for case in (column.results or {}).get("cases") or []}
        for case_id, case in cases.items():
            if case_id not in cited:
                order.append(case_id)
                cited[case_id] = [rule.get("id", "?") for rule in case.get("rules") or [] if isinstance(rule, dict)]
                subjects[case_id] = rules_table.subject_of(case)
        by_column.append(cases)
    rows = []
    for case_id in order:
        cells = [_case_cell(column, cases.get(case_id)) for column, cases in zip(columns, by_column)]
        keys = {_case_key(cell) for cell in cells if cell["outcome"] != NO_RESULTS}
        rows.append({"id": case_id, "anchor": model.anchor(case_id), "rules": cited[case_id], "subject": subjects[case_id], "cells": cells,
                     "changed": len(keys) > 1})
    return rows


def _median_figures(case: dict) -> Dict[str, dict]:
    """figure name -> {median, count, metrics} for one case."""
    found = {}
    for name in certification.FIGURES:
        values = certification.figure_values(case, name)
        if values:
            found[name] = {"median": statistics.median(values.values()), "count": len(values),
                           "metrics": sorted(values)}
    return found


def figures_rows(columns: Sequence[Column], factor: float) -> List[dict]:
    """Per (figure, case): the case's median per release, and for each
    release after the first its ratio to the previous release with a value."""
    medians = [{case["id"]: _median_figures(case) for case in (column.results or {}).get("cases") or []}
               for column in columns]
    rows = []
    for name, spec in certification.FIGURES.items():
        case_ids: List[str] = []
        for per_case in medians:
            case_ids += [case_id for case_id, figures in per_case.items() if name in figures and case_id not in case_ids]
        for case_id in case_ids:
            cells = [per_case.get(case_id, {}).get(name) for per_case in medians]
            previous = None
            moved = False
            for cell in cells:
                if cell is None:
                    continue
                if previous is not None:
                    cell["ratio"] = ratio(previous["median"], cell["median"])
                    cell["moved"] = moved_by(previous["median"], cell["median"], factor)
                    moved = moved or cell["moved"]
                previous = cell
            rows.append({"figure": name, "title": spec["title"], "unit": spec["unit"], "meaning": spec["meaning"],
                         "case": case_id, "cells": cells, "moved": moved})
    return rows


def ratio(before: float, after: float) -> Optional[float]:
    return after / before if before else None


def moved_by(before: float, after: float, factor: float) -> bool:
    """More than `factor` times larger or smaller; from or to zero counts when the other is not zero."""
    low, high = sorted((abs(before), abs(after)))
    if low == 0:
        return high > 0
    return high / low > factor


def _verdict_changed(row: dict, before: int, after: int) -> bool:
    return row["cells"][before]["verdict"] != row["cells"][after]["verdict"]


def _unselected(row: dict, before: int, after: int) -> bool:
    return row["cells"][before]["unselected"] or row["cells"][after]["unselected"]


def _rule_change(row: dict, before: int, after: int) -> dict:
    return {"id": row["id"], "anchor": row["anchor"], "from": row["cells"][before]["verdict"],
            "to": row["cells"][after]["verdict"],
            "violating": row["cells"][after]["violating"] or row["cells"][before]["violating"]}


def changes(columns: Sequence[Column], rules: List[dict], cases: List[dict], figures: List[dict],
            factor: float) -> List[dict]:
    """Between neighbouring releases that have results (a release without
    results is named and stepped over)."""
    present = [index for index, column in enumerate(columns) if column.results is not None]
    steps = []
    for before, after in zip(present, present[1:]):
        skipped = [columns[index].label for index in range(before + 1, after)]
        steps.append({
            "from": columns[before].label, "to": columns[after].label, "skipped": skipped,
            "rules": [_rule_change(row, before, after) for row in rules if _verdict_changed(row, before, after)
                      and not _unselected(row, before, after)],
            # judged in one run, without a selected case in the other (-k): listed apart, not as changes
            "rules_unselected": [row["id"] for row in rules if _verdict_changed(row, before, after)
                                 and _unselected(row, before, after)],
            "cases": [{"id": row["id"], "from": row["cells"][before], "to": row["cells"][after]}
                      for row in cases if _case_key(row["cells"][before]) != _case_key(row["cells"][after])
                      and ABSENT not in (row["cells"][before]["outcome"], row["cells"][after]["outcome"])],
            # in one of the two runs only (-k, a suite that grew, an interrupted run): listed apart
            "only_before": [row["id"] for row in cases if row["cells"][after]["outcome"] == ABSENT
                            and row["cells"][before]["outcome"] != ABSENT],
            "only_after": [row["id"] for row in cases if row["cells"][before]["outcome"] == ABSENT
                           and row["cells"][after]["outcome"] != ABSENT],
            "figures": [{"figure": row["figure"], "title": row["title"], "unit": row["unit"], "case": row["case"],
                         "from": row["cells"][before]["median"], "to": row["cells"][after]["median"],
                         "ratio": ratio(row["cells"][before]["median"], row["cells"][after]["median"])}
                        for row in figures if row["cells"][before] and row["cells"][after]
                        and moved_by(row["cells"][before]["median"], row["cells"][after]["median"],
                                     factor)],
        })
    return steps


def matrix_view(columns: Sequence[Column], output_dir: Path, factor: float = DEFAULT_FACTOR) -> dict:
    """Everything matrix.html shows, JSON-serialisable (matrix.json is this)."""
    columns = ordered(columns)
    rules = rules_rows(columns)
    cases = cases_rows(columns)
    figures = figures_rows(columns, factor)
    steps = changes(columns, rules, cases, figures, factor)
    return {"schema": SCHEMA, "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "factor": factor, "releases": [release_header(column, Path(output_dir)) for column in columns],
            "rules": rules, "cases": cases, "figures": figures, "changes": steps}


def columns_of(runs: Iterable[Tuple[str, Path]]) -> List[Column]:
    """Recorded runs, each labelled with its release: ResultsError for the
    first that cannot be used, or for a label given twice."""
    runs = list(runs)
    labels = [label for label, _ in runs]
    for label in labels:
        if labels.count(label) > 1:
            raise ResultsError(f"release {label!r} is given twice")
    return [load_column(label, Path(run_dir)) for label, run_dir in runs]


def _write(path: Path, text: str) -> None:
    write_atomically(path, text)


def render_matrix(view: dict) -> str:
    from vnetct.report import _environment

    return _environment().get_template("matrix.html.j2").render(matrix=view)


def write_columns(columns: Sequence[Column], output: Path, factor: float = DEFAULT_FACTOR) -> Tuple[Path, dict]:
    """matrix.html and matrix.json (the same view) into directory `output`."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    view = matrix_view(columns, output.resolve(), factor)
    _write(output / MATRIX_JSON, json.dumps(view, indent=2) + "\n")
    _write(output / MATRIX_HTML, render_matrix(view))
    return output / MATRIX_HTML, view


def write_matrix(runs: Iterable[Tuple[str, Path]], output: Path, factor: float = DEFAULT_FACTOR) -> Path:
    """From recorded runs [(release label, run dir)]: output/matrix.html and
    output/matrix.json; ResultsError if a results.json is missing or malformed."""
    return write_columns(columns_of(runs), output, factor)[0]
