"""results.json read by `vnetct report` is untrusted input (issue 17): a case
that is not an object, a string duration, very deep JSON, any JSON at all ->
the report either renders or raises ResultsError naming the file and the
field; never another exception (report/validate.py)."""

import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vnetct.cli import main as cli
from vnetct.report import ResultsError, render
from vnetct.report.validate import MAX_DEPTH

RULE = {"id": "FO-NEG-01", "area": "failover", "sentence": "The standby is negotiated."}
CASE = {"id": "failover/negotiation/primary-hidden", "nodeid": "cases/failover/negotiation.py::test_x",
        "rules": [RULE], "outcome": "passed", "reason": None, "duration_s": 1.5,
        "started": "2026-11-22T04:44:10.000+00:00", "artifacts": {}, "metrics": {"unplug_latency": {"value": 0.1,
                                                                                                    "unit": "s"}},
        "steps": [{"t": 0.1, "text": "starting QEMU"}]}
RESULTS = {"schema": "vnetct-results/1", "run_id": "r1", "profile": "qemu", "command": "./vnetct run",
           "sut": {"qemu_version": "10.0.2"}, "lanes": [], "started": "2026-11-22T04:44:07.120+00:00",
           "finished": "2026-11-22T04:46:13.620+00:00", "interrupted": False, "run_problems": [], "cases": [CASE]}


def _write(run_dir: Path, text: str) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "results.json").write_text(text)
    return run_dir


def _refusal(run_dir: Path) -> str:
    with pytest.raises(ResultsError) as raised:
        render(run_dir)
    message = str(raised.value)
    assert message.startswith(str(run_dir / "results.json") + ": "), message
    return message


def test_the_valid_file_renders(tmp_path):
    assert "primary-hidden" in render(_write(tmp_path / "run", json.dumps(RESULTS)))


def test_a_case_that_is_not_an_object_names_it(tmp_path):
    run_dir = _write(tmp_path / "run", json.dumps({**RESULTS, "cases": [CASE, "gone"]}))
    assert _refusal(run_dir).endswith("field 'cases[1]': 'gone' is not a JSON object")


def test_a_string_duration_names_the_field(tmp_path):
    run_dir = _write(tmp_path / "run", json.dumps({**RESULTS, "cases": [{**CASE, "duration_s": "1.5"}]}))
    assert _refusal(run_dir).endswith("field 'cases[0].duration_s': '1.5' is not a number")


def test_an_infinite_duration_is_refused(tmp_path):
    run_dir = _write(tmp_path / "run", json.dumps({**RESULTS, "cases": [{**CASE, "duration_s": math.inf}]}))
    assert _refusal(run_dir).endswith("field 'cases[0].duration_s': inf is not a finite number")


def test_very_deep_json_is_refused_without_a_recursion_error(tmp_path):
    depth = 200_000
    text = '{"cases": [], "sut": ' + "[" * depth + "]" * depth + "}"
    assert "nested too deeply" in _refusal(_write(tmp_path / "deep", text))


def test_json_deeper_than_the_limit_names_the_field(tmp_path):
    nested: dict = {}
    for _ in range(MAX_DEPTH + 5):
        nested = {"a": nested}
    run_dir = _write(tmp_path / "run", json.dumps({**RESULTS, "sut": nested}))
    message = _refusal(run_dir)
    assert "field 'sut.a.a." in message and message.endswith(f"nested deeper than {MAX_DEPTH} levels"), message


def test_the_report_command_says_why_without_a_traceback(tmp_path, capsys):
    run_dir = _write(tmp_path / "run", json.dumps({**RESULTS, "cases": [{**CASE, "steps": [{"t": "soon"}]}]}))
    assert cli.main(["report", str(run_dir)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "field 'cases[0].steps[0].t': 'soon' is not a number" in err and "Traceback" not in err, err


# --- the property: any JSON -> a report or a ResultsError --------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70) | st.floats() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=25)
CASE_KEYS = sorted({*CASE, "details", "lane", "expected", "expectation", "violated_rules", "violations",
                    "log_tails", "timeline", "series", "second_opinions", "record_problems", "unexpected"})
RUN_KEYS = sorted({*RESULTS, "rules", "expectations"})


def _overridden(base: dict, keys):
    # A valid record with some fields replaced by any JSON: the report gets past
    # the first check and reads the rest.
    return st.builds(lambda changes: {**base, **changes}, st.dictionaries(st.sampled_from(keys), JSON, max_size=3))


CASES = st.lists(_overridden(CASE, CASE_KEYS) | JSON, max_size=3)
RESULTS_FILES = JSON | _overridden(RESULTS, RUN_KEYS) | st.builds(lambda cases, run: {**run, "cases": cases}, CASES,
                                                                 _overridden(RESULTS, RUN_KEYS))


@settings(deadline=None, database=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(RESULTS_FILES)
def test_any_json_gives_a_report_or_a_results_error(results):
    with tempfile.TemporaryDirectory() as folder:
        run_dir = _write(Path(folder) / "run", json.dumps(results))
        try:
            render(run_dir)
        except ResultsError as error:
            assert str(error).startswith(str(run_dir / "results.json") + ": "), error
