"""results.json (the only input of reports) and junit.xml. The schema is
documented in reports/RESULTS.md. results.json and junit.xml are rewritten
atomically (vnetct.core.atomic_file) after every case, so an interrupted or
killed run keeps the finished cases in both."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from vnetct.core.atomic_file import write_atomically
from vnetct.core.text import for_xml
from vnetct.report.rules_table import DEFAULT_SUBJECT, rules_table

SCHEMA = "vnetct-results/1"
OUTCOMES = ("passed", "failed", "skipped", "error")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Results:
    def __init__(self, run_dir: Path, header: Dict[str, Any], rules: Iterable[dict] = ()):
        """`rules`: every known rule ({"id", "area", "sentence"}); the rules
        table lists them all, judged or not."""
        self.run_dir = run_dir
        self.rules = [{"id": rule["id"], "area": rule.get("area"), "sentence": rule.get("sentence", "")}
                      for rule in rules]
        self.data: Dict[str, Any] = {"schema": SCHEMA, **header, "started": now_iso(), "finished": None,
                                     "interrupted": False, "cases": [], "run_problems": []}

    @property
    def cases(self) -> List[dict]:
        return self.data["cases"]

    def add_case(self, case: dict) -> None:
        self.cases.append(case)
        self.write()

    def summary(self) -> Dict[str, int]:
        counts = {outcome: 0 for outcome in OUTCOMES}
        for case in self.cases:
            counts[case["outcome"]] += 1
        counts["total"] = len(self.cases)
        return counts

    def ok(self) -> bool:
        counts = self.summary()
        return (counts["failed"] == 0 and counts["error"] == 0 and not self.data["interrupted"]
                and not self.data["run_problems"])

    def write(self, finished: bool = False) -> Path:
        if finished:
            self.data["finished"] = now_iso()
        self.data["summary"] = self.summary()
        self.data["rules"] = rules_table(self.rules, self.cases)
        path = save(self.run_dir, self.data)
        self.write_junit()  # with every results.json: a run killed mid-case keeps both, each whole
        return path

    def write_junit(self) -> Path:
        """junit.xml: every text from a case (its reason, details, steps may
        quote the guest or QEMU) with what XML forbids escaped (core.text)."""
        counts = self.summary()
        suite = ElementTree.Element("testsuite", name=f"vnetct-{self.data.get('profile', '')}",
                                    tests=str(counts["total"]), failures=str(counts["failed"]),
                                    errors=str(counts["error"]), skipped=str(counts["skipped"]),
                                    time=f"{sum(c['duration_s'] for c in self.cases):.3f}",
                                    timestamp=self.data["started"])
        for case in self.cases:
            classname, _, name = for_xml(case["id"]).rpartition("/")
            element = ElementTree.SubElement(suite, "testcase", classname=classname.replace("/", "."), name=name,
                                             time=f"{case['duration_s']:.3f}")
            rules = ", ".join(rule["id"] for rule in case["rules"])
            properties = ElementTree.SubElement(element, "properties")
            ElementTree.SubElement(properties, "property", name="rules", value=rules)
            reason = for_xml(case.get("reason") or "")
            details = for_xml(case.get("details") or reason)
            if case["outcome"] == "failed":
                ElementTree.SubElement(element, "failure", message=reason[:500]).text = details
            elif case["outcome"] == "error":
                ElementTree.SubElement(element, "error", message=reason[:500]).text = details
            elif case["outcome"] == "skipped":
                ElementTree.SubElement(element, "skipped", message=reason)
        tree = ElementTree.ElementTree(ElementTree.Element("testsuites"))
        tree.getroot().append(suite)
        ElementTree.indent(tree)
        return write_atomically(self.run_dir / "junit.xml",
                                ElementTree.tostring(tree.getroot(), encoding="utf-8", xml_declaration=True))


def interrupted_case(nodeid: str, case_id: Optional[str], rules: Iterable[dict], subject: Optional[str],
                     started: str, duration_s: float) -> dict:
    """The record of a case that Ctrl-C or SIGTERM stopped while it ran: an
    error that names no rule."""
    return {"id": case_id or case_id_from_nodeid(nodeid), "nodeid": nodeid,
            "rules": [{"id": rule["id"], "sentence": rule["sentence"]} for rule in rules],
            "subject": subject or DEFAULT_SUBJECT, "outcome": "error",
            "reason": "interrupted (Ctrl-C or SIGTERM) while running", "violated_rules": [],
            "duration_s": round(duration_s, 3), "started": started, "artifacts": {}, "metrics": {}, "steps": []}


def case_id_from_nodeid(nodeid: str, cases_prefix: str = "cases/") -> str:
    """'cases/failover/negotiation.py::test_primary_hidden[x]' ->
    'failover/negotiation/primary-hidden/x'."""
    path, _, name = nodeid.partition("::")
    if path.startswith(cases_prefix):
        path = path[len(cases_prefix):]
    if path.endswith(".py"):
        path = path[:-3]
    parts = [p for p in path.split("/") if p]
    if parts and parts[-1].startswith("test_"):
        parts[-1] = parts[-1][len("test_"):]
    base, _, params = name.partition("[")
    if base.startswith("test_"):
        base = base[len("test_"):]
    parts.append(base.replace("_", "-"))
    if params:
        parts.append(params.rstrip("]").replace("_", "-"))
    return "/".join(part.replace("_", "-") for part in parts)


def save(run_dir: Path, data: dict) -> Path:
    """Writes results.json atomically (a reader never sees half a file)."""
    return write_atomically(run_dir / "results.json", json.dumps(data, indent=2, sort_keys=False) + "\n")


