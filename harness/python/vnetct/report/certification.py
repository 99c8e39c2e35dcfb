"""The certification view: the figures a NIC vendor quotes, taken from the
cases' metrics and checked against stated thresholds, plus fingerprints that
let a reader check a report later (the environment's, and the results file's
own SHA-256)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Dict, List, Optional

# figure -> how to find it and the default limit. A metric counts when its name
# is one of `metrics` or starts with one of `prefixes` (e.g. unplug_latency_hostdev1).
# Limits are this project's defaults for a 2-core TCG machine; a vendor states
# its own with `vnetct report --thresholds FILE` (JSON: {"unplug_latency": 0.5, ...}).
FIGURES: Dict[str, dict] = {
    "unplug_latency": {
        "title": "Unplug latency", "unit": "s", "limit": 1.0, "metrics": ["unplug_latency"],
        "prefixes": ["unplug_latency_"],
        "meaning": "UNPLUG_PRIMARY to the guest releasing the primary"},
    "replug_latency": {
        "title": "Re-plug latency", "unit": "s", "limit": 3.0, "metrics": ["replug_carrying_latency"],
        "prefixes": [],
        "meaning": "target RESUME to the primary carrying traffic again in the guest"},
    "downtime": {
        "title": "Downtime", "unit": "ms", "limit": 300.0, "metrics": ["qemu_downtime"], "prefixes": [],
        "meaning": "QEMU's reported downtime of the migration"},
    "switchover_loss": {
        "title": "Switchover loss", "unit": "datagrams", "limit": 400.0,
        "metrics": ["switchover_lost"], "prefixes": [],
        "meaning": "datagrams of the 200/s stream never echoed from UNPLUG_PRIMARY until the re-plugged "
                   "primary carries (phases wait-unplug, migration and re-plug)"},
    "longest_loss_window": {
        "title": "Longest loss window", "unit": "ms", "limit": 1000.0, "metrics": ["longest_loss_window"],
        "prefixes": [],
        "meaning": "the longest stretch of consecutive lost datagrams"},
}

_UNIT_FACTORS = {("ms", "s"): 0.001, ("s", "ms"): 1000.0}


class ThresholdError(ValueError):
    """A thresholds file that cannot be used; the message says why."""


def load_thresholds(path: Optional[Path]) -> Dict[str, float]:
    limits = {name: figure["limit"] for name, figure in FIGURES.items()}
    if path is None:
        return limits
    try:
        given = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ThresholdError(f"{path}: {error}") from error
    if not isinstance(given, dict):
        raise ThresholdError(f"{path}: expected a JSON object of figure -> limit")
    for name, value in given.items():
        if name not in FIGURES:
            raise ThresholdError(f"{path}: unknown figure '{name}' (known: {', '.join(FIGURES)})")
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ThresholdError(f"{path}: {name}: the limit must be a number in {FIGURES[name]['unit']}")
        limits[name] = float(value)
    return limits


def _convert(value, unit: str, wanted: str) -> Optional[float]:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    if unit == wanted or not unit or wanted == "datagrams":
        return float(value)
    factor = _UNIT_FACTORS.get((unit, wanted))
    return None if factor is None else float(value) * factor


def figure_values(case: dict, name: str) -> Dict[str, float]:
    """metric name -> value in the figure's unit, for the metrics of `case` that give figure `name`."""
    figure = FIGURES[name]
    values = {}
    for metric, measured in sorted((case.get("metrics") or {}).items()):
        if metric not in figure["metrics"] and not any(metric.startswith(p) for p in figure["prefixes"]):
            continue
        if not isinstance(measured, dict):
            continue
        value = _convert(measured.get("value"), measured.get("unit", ""), figure["unit"])
        if value is not None:
            values[metric] = value
    return values


def figures(cases: List[dict], limits: Dict[str, float]) -> List[dict]:
    """Per figure: every case value, its verdict against the limit, and the worst."""
    table = []
    for name, figure in FIGURES.items():
        rows = [{"case": case["id"], "metric": metric, "value": value, "outcome": case["outcome"],
                 "within": value <= limits[name], "variant": metric not in figure["metrics"]}
                for case in cases for metric, value in figure_values(case, name).items()]
        worst = max(rows, key=lambda row: row["value"]) if rows else None
        table.append({"name": name, "title": figure["title"], "unit": figure["unit"], "limit": limits[name],
                      "meaning": figure["meaning"], "rows": rows, "worst": worst,
                      "verdict": "no data" if not rows else ("within" if all(r["within"] for r in rows)
                                                              else "exceeded")})
    return table


def canonical_hash(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def environment_fingerprint(results: dict) -> dict:
    """What the figures depend on, hashed: the SUT description and the profile."""
    environment = {"profile": results.get("profile"), "sut": results.get("sut") or {}}
    return {"sha256": canonical_hash(environment), "fields": environment}


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
