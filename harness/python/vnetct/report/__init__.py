"""The HTML report: one self-contained file (inline CSS and SVG, a few lines
of inline script, no network access) rendered with Jinja from results.json
alone, with relative links to the case artifacts beside it.

    write_report(run_dir)                       -> run_dir/report.html
    write_report(run_dir, [older_dir, ...])     -> the same, comparing the runs
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Optional

from vnetct.core.atomic_file import write_atomically

from . import certification, model
from .certification import ThresholdError
from .model import ResultsError

TEMPLATES = Path(__file__).resolve().parent / "templates"
REPORT_NAME = "report.html"

__all__ = ["write_report", "write_selftest_report", "render", "ResultsError", "ThresholdError", "REPORT_NAME"]


def _environment():
    import jinja2  # Debian: python3-jinja2

    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                                     autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
                                     undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    environment.filters["ms"] = lambda value: "-" if value is None else f"{value:.1f} ms"
    environment.filters["num"] = _num
    environment.filters["seconds"] = _seconds
    environment.filters["anchor"] = model.anchor
    return environment


def _num(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:.0f}"
    return str(value)


def _seconds(value) -> str:
    if value is None:
        return "-"
    if value >= 120:
        return f"{int(value // 60)} min {value % 60:.0f} s"
    return f"{value:.1f} s"


def render(run_dir: Path, compare: Iterable[Path] = (), output: Optional[Path] = None,
           thresholds: Optional[Path] = None, across_runs: Optional[dict] = None) -> str:
    """The report's HTML for `run_dir`, comparing it with the runs in
    `compare`; `across_runs`: a `vnetct certify` summary (certification.json)
    shown in the certification view."""
    run = model.load_run(run_dir)
    others = [model.load_run(other) for other in compare]
    output_dir = (Path(output).resolve().parent if output else run.run_dir.resolve())
    limits = certification.load_thresholds(thresholds)
    view = model.run_view(run, output_dir, limits)
    comparison = model.comparison_view([run, *others])
    template = _environment().get_template("report.html.j2")
    return template.render(run=view, index=model.sorted_index(view["cases"]), comparison=comparison,
                           across_runs=across_runs,
                           thresholds_source=str(thresholds) if thresholds else "the defaults of vnetct",
                           generated=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def write_report(run_dir: Path, compare: Iterable[Path] = (), output: Optional[Path] = None,
                 thresholds: Optional[Path] = None, across_runs: Optional[dict] = None) -> Path:
    """Render and write atomically; returns the path of the report."""
    run_dir = Path(run_dir)
    path = Path(output) if output else (run_dir if run_dir.is_dir() else run_dir.parent) / REPORT_NAME
    html = render(run_dir, compare, path, thresholds, across_runs)
    return write_atomically(path, html)


def _relative_report(run_dir: Optional[str], root: Path) -> str:
    return os.path.relpath(Path(run_dir) / REPORT_NAME, root) if run_dir else "#"


def write_selftest_report(root: Path, summary: dict) -> Path:
    """<root>/selftest.html from a `vnetct selftest` summary (selftest.json):
    each fault, the rule it must trip, what caught it, linked to its run."""
    root = Path(root)
    faults = [{**fault, "link": _relative_report(fault["run"].get("dir"), root)} for fault in summary["faults"]]
    html = _environment().get_template("selftest.html.j2").render(
        caught=summary["caught"], of=summary["of"], bound_s=summary["verdict_bound_s"], qemu=summary["qemu"],
        baseline_failed=summary["baseline"]["failed"], baseline_passed=len(summary["baseline"]["durations_s"]),
        baseline_wall_s=summary["baseline"]["wall_s"],
        baseline_link=_relative_report(summary["baseline"].get("dir"), root), faults=faults,
        generated=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    path = root / "selftest.html"
    path.write_text(html, encoding="utf-8")
    return path
