"""results.json is input from outside the report (a run killed half-way, a file
edited by hand, or one a vendor sends): before the report reads it, every field
the report reads is checked here, and a malformed one is a ResultsError naming
the file and the field, never a traceback.

    check_results(results, path)   the whole file: depth, then the fields
    ResultsError                   the message is "<file>: field '<field>': <problem>"
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Tuple

# Deeper JSON is refused: the report walks values recursively (the SUT table,
# the fingerprint's hash) and results.json nests six levels or so.
MAX_DEPTH = 64
OUTCOMES = ("passed", "failed", "skipped", "error")


class ResultsError(Exception):
    """A results directory that cannot be reported on; the message says why."""


def fail(path: Path, field: str, problem: str) -> ResultsError:
    return ResultsError(f"{path}: field '{field}': {problem}")


def check_depth(value: Any, path: Path, limit: int = MAX_DEPTH) -> None:
    """ResultsError naming the first field nested deeper than `limit`; an
    explicit stack, so a value of any depth is walked without recursion."""
    stack = [(value, "", 0)]
    while stack:
        item, field, depth = stack.pop()
        if not isinstance(item, (dict, list)):
            continue
        if depth >= limit:
            raise fail(path, field or "(top level)", f"nested deeper than {limit} levels")
        children = item.items() if isinstance(item, dict) else enumerate(item)
        for key, child in children:
            name = f"{field}[{key}]" if isinstance(item, list) else (f"{field}.{key}" if field else str(key))
            stack.append((child, name, depth + 1))


_KINDS = {
    "a string": (str,), "a number": (int, float), "true or false": (bool,), "a list": (list,),
    "a JSON object": (dict,),
}


def _check(path: Path, where: str, container: dict, name: str, kind: str, required: bool = False) -> None:
    """`container[name]` is of `kind` (None or absent allowed unless `required`)."""
    value = container.get(name)
    if value is None:
        if required:
            raise fail(path, _join(where, name), f"missing (must be {kind})")
        return
    types = _KINDS[kind]
    if not isinstance(value, types) or (kind == "a number" and isinstance(value, bool)):
        raise fail(path, _join(where, name), f"{_shown(value)} is not {kind}")
    if kind == "a number" and not math.isfinite(value):
        raise fail(path, _join(where, name), f"{_shown(value)} is not a finite number")


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _objects(path: Path, where: str, items: Iterable[Any]) -> Iterable[Tuple[str, dict]]:
    for index, item in enumerate(items):
        field = f"{where}[{index}]"
        if not isinstance(item, dict):
            raise fail(path, field, f"{_shown(item)} is not a JSON object")
        yield field, item


def _check_strings(path: Path, where: str, container: dict, name: str) -> None:
    """A list of strings, or a JSON object of string values."""
    value = container.get(name)
    items = value.items() if isinstance(value, dict) else enumerate(value or [])
    for key, item in items:
        if not isinstance(item, str):
            raise fail(path, f"{_join(where, name)}[{key!r}]" if isinstance(value, dict)
                       else f"{_join(where, name)}[{key}]", f"{_shown(item)} is not a string")


def check_case(path: Path, where: str, case: dict) -> None:
    _check(path, where, case, "id", "a string", required=True)
    if case.get("outcome") not in OUTCOMES:
        raise fail(path, f"{where}.outcome", f"{_shown(case.get('outcome'))} is not one of {', '.join(OUTCOMES)}")
    for name in ("nodeid", "reason", "details", "started", "unexpected", "lane"):
        _check(path, where, case, name, "a string")
    _check(path, where, case, "duration_s", "a number")
    _check(path, where, case, "expected", "true or false")
    for name in ("rules", "violated_rules", "steps", "violations", "record_problems"):
        _check(path, where, case, name, "a list")
    for name in ("metrics", "artifacts", "log_tails", "timeline", "series", "second_opinions", "expectation"):
        _check(path, where, case, name, "a JSON object")
    for field, rule in _objects(path, f"{where}.rules", case.get("rules") or []):
        _check(path, field, rule, "id", "a string", required=True)
        _check(path, field, rule, "sentence", "a string")
    for field, step in _objects(path, f"{where}.steps", case.get("steps") or []):
        _check(path, field, step, "t", "a number", required=True)
        _check(path, field, step, "text", "a string", required=True)
    _check_strings(path, where, case, "artifacts")
    _check_strings(path, where, case, "violated_rules")
    expectation = case.get("expectation")
    if expectation:
        field = f"{where}.expectation"
        for name in ("outcome", "finding", "file"):
            _check(path, field, expectation, name, "a string", required=True)
        _check(path, field, expectation, "line", "a number", required=True)
        _check(path, field, expectation, "violated_rules", "a list")
        _check(path, field, expectation, "evidence", "a JSON object")


def check_results(results: Any, path: Path) -> None:
    """The fields the report reads, checked: ResultsError naming the file and
    the field. Optional fields may be absent or null."""
    if not isinstance(results, dict):
        raise fail(path, "(top level)", f"{type(results).__name__} is not a JSON object")
    check_depth(results, path)
    for name in ("schema", "run_id", "profile", "command", "started", "finished"):
        _check(path, "", results, name, "a string")
    _check(path, "", results, "interrupted", "true or false")
    _check(path, "", results, "cases", "a list", required=True)
    for name in ("run_problems", "lanes", "rules"):
        _check(path, "", results, name, "a list")
    for name in ("sut", "expectations"):
        _check(path, "", results, name, "a JSON object")
    expectations = results.get("expectations")
    if expectations:
        _check(path, "expectations", expectations, "why", "a string", required=True)
        for name in ("unexpected_passes", "problems"):
            _check(path, "expectations", expectations, name, "a list")
    for field, case in _objects(path, "cases", results.get("cases") or []):
        check_case(path, field, case)
