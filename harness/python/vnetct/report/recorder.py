"""What one case records while it runs: steps, metrics, artifacts, pictures
for the report, and which VMs it used (their traces are judged when it
ends). The fixture `case` gives it to the case."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, List


class CaseRecorder:
    """What one case records: steps, metrics, artifacts. Fixture `case`."""

    def __init__(self, state, case_id: str):
        self._state = state
        self.id = case_id
        self.dir = state.run_dir / "cases" / case_id
        self.dir.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        self.steps: List[dict] = []
        self.metrics: Dict[str, dict] = {}
        self.artifacts: Dict[str, Path] = {}
        self.extra: Dict[str, Any] = {}  # timeline, series: pictures for the report
        self.finishers: List[Any] = []  # called when the case ends, pass or fail
        self.factories: List[Any] = []  # the case's VM factory (its VMs are judged)
        self.used: List[Any] = []       # VMs of wider scope the case used (case.uses)

    def step(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        self.steps.append({"t": round(elapsed, 3), "text": text})
        self._state.progress(f"       · {elapsed:6.1f} s  {text}")

    def metric(self, name: str, value: Any, unit: str = "") -> None:
        self.metrics[name] = {"value": value, "unit": unit}

    def timeline(self, data: dict) -> None:
        """Events on named tracks, phases and windows, in ms from one origin
        (reports/RESULTS.md: case.timeline)."""
        self.extra["timeline"] = data

    def at_finish(self, finisher) -> None:
        """`finisher()` runs when the case has ended (also after a failure),
        before its results are written: for records that sum up the case."""
        self.finishers.append(finisher)

    def series(self, name: str, data: dict) -> None:
        """Parallel lists to chart (reports/RESULTS.md: case.series)."""
        self.extra.setdefault("series", {})[name] = data

    def second_opinion(self, name: str, opinion: dict) -> None:
        """Another judge's verdict on what the case measured, recorded beside
        the case's own (reports/RESULTS.md: case.second_opinions); it never
        changes the outcome."""
        self.extra.setdefault("second_opinions", {})[name] = opinion

    def artifact(self, name: str, path: Path) -> None:
        self.artifacts[name] = Path(path)

    def save_json(self, name: str, data: Any) -> Path:
        path = self.dir / name
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        self.artifact(name, path)
        return path

    def judged_vms(self) -> List[Any]:
        """The VMs whose traces are checked when the case ends: every VM the
        case's factory made and every VM it said it used."""
        vms: List[Any] = []
        for vm in [*self.used, *(vm for factory in self.factories for vm in factory.vms)]:
            if all(vm is not other for other in vms):
                vms.append(vm)
        return vms

    def uses(self, *vms) -> None:
        for vm in vms:
            if all(vm is not other for other in self.used):
                self.used.append(vm)
        models = self._state.results.data.setdefault("sut", {}).setdefault("nic_models", [])
        for vm in vms:
            for nic in vm.spec.nics:
                if nic.driver not in models:
                    models.append(nic.driver)
            for name, path in vm.artifact_paths().items():
                self.artifact(name, path)
            if vm.boot_seconds is not None:
                self.metric(f"boot_seconds_{vm.name}", round(vm.boot_seconds, 2), "s")
            if getattr(vm, "ready_seconds", None) is not None:
                self.metric(f"ready_seconds_{vm.name}", round(vm.ready_seconds, 3), "s")
            if getattr(vm, "restored", None):
                self.extra.setdefault("guests", {})[vm.name] = {"restored": vm.restored}
            elif getattr(vm, "boot_seconds", None) is not None:
                self.extra.setdefault("guests", {})[vm.name] = {"booted": True}
