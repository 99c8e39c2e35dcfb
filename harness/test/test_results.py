"""results.json / junit.xml writing and case ids: no VM needed."""

import json
import xml.etree.ElementTree as ElementTree

from vnetct.report.results import Results, case_id_from_nodeid


def test_case_id_mirrors_the_file_layout():
    assert case_id_from_nodeid("cases/failover/negotiation.py::test_primary_hidden_until_ack") == \
        "failover/negotiation/primary-hidden-until-ack"
    assert case_id_from_nodeid("cases/failover/migrate/abort.py::test_wait_unplug[acpi]") == \
        "failover/migrate/abort/wait-unplug/acpi"
    assert case_id_from_nodeid("cases/livetap/test_handoff.py::test_zero_loss") == "livetap/handoff/zero-loss"


def _case(case_id, outcome, reason=None):
    return {"id": case_id, "nodeid": case_id, "rules": [{"id": "FO-NEG-01", "sentence": "s."}], "outcome": outcome,
            "reason": reason, "duration_s": 1.5, "started": "t", "artifacts": {}, "metrics": {}, "steps": []}


def test_results_are_rewritten_after_every_case(tmp_path):
    results = Results(tmp_path, {"run_id": "r1", "profile": "qemu", "command": "./vnetct run", "sut": {}})
    results.add_case(_case("failover/a/one", "passed"))
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["summary"]["passed"] == 1 and on_disk["finished"] is None
    results.add_case(_case("failover/a/two", "failed", "AssertionError: primary visible"))
    results.add_case(_case("failover/b/three", "skipped", "QEMU lacks backend-transfer"))
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["summary"] == {"passed": 1, "failed": 1, "skipped": 1, "error": 0, "total": 3}
    assert not results.ok()


def test_an_interrupted_or_unclean_run_is_not_ok(tmp_path):
    results = Results(tmp_path, {"run_id": "r", "profile": "qemu", "command": "", "sut": {}})
    results.add_case(_case("x/y/z", "passed"))
    assert results.ok()
    results.data["run_problems"].append("killed 1234: qemu")
    assert not results.ok()
    results.data["run_problems"].clear()
    results.data["interrupted"] = True
    assert not results.ok()


def test_junit_has_one_testcase_per_case_with_outcome(tmp_path):
    results = Results(tmp_path, {"run_id": "r1", "profile": "qemu", "command": "", "sut": {}})
    results.add_case(_case("failover/a/one", "passed"))
    results.add_case(_case("failover/a/two", "failed", "boom <&>"))
    results.add_case(_case("failover/b/three", "skipped", "no feature"))
    root = ElementTree.parse(results.write_junit()).getroot()
    suite = root.find("testsuite")
    assert suite.get("tests") == "3" and suite.get("failures") == "1" and suite.get("skipped") == "1"
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("failover.a", "one"), ("failover.a", "two"), ("failover.b", "three")]
    assert cases[1].find("failure").get("message") == "boom <&>"
    assert cases[2].find("skipped").get("message") == "no feature"
    assert cases[0].find("properties/property").get("value") == "FO-NEG-01"


KNOWN = [{"id": "FO-NEG-01", "area": "failover", "sentence": "s."},
         {"id": "FO-NEG-02", "area": "failover", "sentence": "t."}]


def test_every_write_recomputes_the_rules_table_over_every_known_rule(tmp_path):
    results = Results(tmp_path, {"run_id": "r1", "profile": "qemu", "command": "", "sut": {}}, rules=KNOWN)
    results.write()
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert [(e["id"], e["sut"]["verdict"]) for e in on_disk["rules"]] == [("FO-NEG-01", "not-judged"),
                                                                          ("FO-NEG-02", "not-judged")]
    results.add_case({**_case("failover/a/one", "passed"), "subject": "sut"})  # a partial run: a partial table
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["rules"][0]["sut"]["verdict"] == "conforms"
    assert on_disk["rules"][1]["sut"]["reasons"] == ["no case selected"]
    results.add_case({**_case("failover/a/two", "failed", "AssertionError: primary visible"), "subject": "sut"})
    assert json.loads((tmp_path / "results.json").read_text())["rules"][0]["sut"]["verdict"] == "violated"
