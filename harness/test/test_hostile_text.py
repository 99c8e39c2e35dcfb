"""Text from the guest or QEMU reaches the terminal and junit.xml escaped
(vnetct.core.text): a case failing, skipping and stepping with control
characters, run through the plugin, leaves a junit.xml that parses and a
terminal output without a control sequence, the escapes shown instead."""

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from hypothesis import given, strategies

from vnetct.core import paths
from vnetct.core.text import for_terminal, for_xml, is_terminal_safe

HOSTILE = "guest says \\x1b[2J\\x1b]0;owned\\x07 \\x00 \\x0c \\r\\u202e evil \\udcff \\ufffe end"
CASES = f'''import pytest
from vnetct.core.verdict import require


@pytest.mark.rule("FO-NEG-01")
def test_fails(case):
    case.step("{HOSTILE}")
    require(False, "FO-NEG-01", "{HOSTILE}")


@pytest.mark.rule("FO-NEG-01")
def test_asserts():
    assert False, "{HOSTILE}"


@pytest.mark.rule("FO-NEG-01")
def test_skips():
    pytest.skip("{HOSTILE}")
'''
# What must never reach the terminal: C0 but tab and newline, DEL, C1, bidi overrides.
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def test_a_run_quoting_control_characters_keeps_junit_parseable_and_the_terminal_clean(tmp_path: Path):
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "demo.py").write_text(CASES)
    run_dir = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "pytest", str(cases), "-p", "vnetct.plugin",
                             "--vnetct-profile=reference", f"--vnetct-run-dir={run_dir}", "-rA",
                             "-p", "no:cacheprovider", "--import-mode=importlib", "-o", "python_files=*.py",
                             "-c", str(paths.REPO / "pytest.ini"), "--rootdir", str(tmp_path)],
                            capture_output=True, cwd=tmp_path, check=False, timeout=120)
    output = (result.stdout + result.stderr).decode("utf-8", errors="surrogateescape")
    assert result.returncode == 1, output
    assert not UNSAFE.search(output), repr(UNSAFE.findall(output))
    assert "\\x1b[2J" in output and "\\u202e" in output
    tree = ElementTree.parse(run_dir / "junit.xml")  # raises if XML 1.0 forbids a character in it
    messages = [e.get("message") for e in tree.iter() if e.tag in ("failure", "skipped")]
    assert len(messages) == 3 and all("\\x1b[2J" in m for m in messages), messages
    results = json.loads((run_dir / "results.json").read_text())
    by_name = {case["id"].rsplit("/", 1)[1]: case for case in results["cases"]}
    assert "FO-NEG-01: guest says \\x1b[2J" in by_name["fails"]["reason"], by_name["fails"]
    assert by_name["fails"]["violated_rules"] == ["FO-NEG-01"]


@given(strategies.text())
def test_escaped_text_is_safe_for_both_and_safe_text_is_kept(text):
    assert is_terminal_safe(for_terminal(text))
    element = ElementTree.Element("a", b=for_xml(text))
    element.text = for_xml(text)
    ElementTree.fromstring(ElementTree.tostring(element, encoding="utf-8"))  # raises on a forbidden character
    if is_terminal_safe(text):
        assert for_terminal(text) == text


def test_the_run_summary_refuses_a_bad_results_file_naming_the_field(tmp_path: Path, capsys):
    """The CLI's summary reads results.json as `vnetct report` does: a case
    that is not an object is a ResultsError naming file and field, exit 1,
    no traceback."""
    from vnetct.cli import main
    (tmp_path / "results.json").write_text(json.dumps({"schema": "vnetct-results/1", "cases": ["not a case"]}))
    assert main._summarise(tmp_path, 1, 1.0, []) == main.EXIT_FAILED
    err = capsys.readouterr().err
    assert f"{tmp_path / 'results.json'}" in err and "cases[0]" in err, err
