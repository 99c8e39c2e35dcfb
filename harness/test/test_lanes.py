"""The parallel lanes on pytest-xdist (vnetct.lanes): the controller's
gathering of the workers' records into one results.json, the grouping of the
cases that share a booted VM, and `vnetct run -j 2` end to end against the
reference profile (no guest, a few seconds)."""

import json
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from vnetct import lanes
from vnetct.core import paths
from vnetct.report.results import Results, interrupted_case

KNOWN = [{"id": "FO-NEG-01", "area": "failover", "sentence": "s."},
         {"id": "FO-NEG-02", "area": "failover", "sentence": "t."}]
RULES = {rule["id"]: rule for rule in KNOWN}


def _case(nodeid, outcome, lane, rule="FO-NEG-01", **extra):
    return {"id": nodeid.replace("::", "/"), "nodeid": nodeid, "rules": [{"id": rule, "sentence": "s."}],
            "outcome": outcome, "reason": None, "duration_s": 1.0, "started": "t", "artifacts": {}, "metrics": {},
            "steps": [], "lane": lane, **extra}


def _node(worker_id, **output):
    return SimpleNamespace(workerinput={"workerid": worker_id}, workeroutput={"exitstatus": 0, **output})


def _teardown(nodeid, case=None, header=None, when="teardown"):
    report = SimpleNamespace(nodeid=nodeid, when=when, longrepr=f"worker 'gw1' crashed while running {nodeid!r}")
    if case is not None:
        report.vnetct_case = case
    if header is not None:
        report.vnetct_header = header
    return report


def _finish(controller):
    session_finish = controller.pytest_sessionfinish(session=None, exitstatus=0)
    next(session_finish)
    with pytest.raises(StopIteration):
        session_finish.send(None)


@pytest.fixture
def controller(tmp_path):
    results = Results(tmp_path, {"run_id": tmp_path.name, "profile": "qemu", "command": "", "sut": {}}, rules=KNOWN)
    made = lanes.Controller(None, results, "00aaff", RULES, interrupted_case)
    yield made
    if made._relay.is_alive():
        _finish(made)


def test_the_controller_gathers_the_workers_records_into_one_results_json(controller, tmp_path):
    ids = ["cases/a.py::one@failover_pair", "cases/a.py::two@failover_pair", "cases/b.py::three"]
    for worker in ("gw0", "gw1"):
        controller.pytest_testnodeready(_node(worker))
        controller.pytest_xdist_node_collection_finished(_node(worker), ids)
    header = {"sut": {"qemu_version": "10.0.2", "nic_models": ["virtio-net-pci"]}, "collected": ["a/one", "a/two",
              "b/three", "b/deselected"], "catalogue": {"cases/a.py::two": {"id": "a/two", "subject": "sut",
                                                                             "rules": ["FO-NEG-02"]}}}
    # Finished in another order than collected, from two lanes; the NIC models are the lanes' together.
    controller.pytest_runtest_logreport(_teardown(ids[2], _case("cases/b.py::three", "failed", "lane-b"), header))
    controller.pytest_runtest_logreport(_teardown(ids[0], _case("cases/a.py::one", "passed", "lane-a"), {
        "sut": {"qemu_version": "10.0.2", "nic_models": ["virtio-net-pci", "e1000e"]}}))
    controller.pytest_runtest_logreport(_teardown(ids[0], when="call"))  # a report without a record: no case
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert [case["id"] for case in on_disk["cases"]] == ["cases/b.py/three", "cases/a.py/one"]  # after every case
    controller.pytest_testnodedown(_node("gw0", vnetct_run_problems=["end-of-run sweep: deleted namespace x"]), None)
    _finish(controller)
    results = json.loads((tmp_path / "results.json").read_text())
    assert [case["id"] for case in results["cases"]] == ["cases/a.py/one", "cases/b.py/three"]  # collection order
    assert [case["lane"] for case in results["cases"]] == ["lane-a", "lane-b"]
    assert results["lanes"] == ["lane-a", "lane-b"] and results["finished"]
    assert results["sut"]["nic_models"] == ["virtio-net-pci", "e1000e"]
    assert results["collected"] == header["collected"]
    assert results["run_problems"] == ["lane-a: end-of-run sweep: deleted namespace x"]
    # Every known rule stays in the table, judged or not.
    assert [(e["id"], e["sut"]["verdict"]) for e in results["rules"]] == [("FO-NEG-01", "violated"),
                                                                          ("FO-NEG-02", "not-judged")]
    assert (tmp_path / "junit.xml").read_text().count("<testcase") == 2


def test_ctrl_c_keeps_the_finished_cases_and_records_the_running_ones(controller, tmp_path):
    ids = ["cases/a.py::one", "cases/a.py::two", "cases/b.py::three"]
    controller.pytest_xdist_node_collection_finished(_node("gw0"), ids)
    controller.pytest_runtest_logreport(_teardown(ids[0], _case(ids[0], "passed", "lane-a"), {"catalogue": {
        ids[1]: {"id": "a/two", "subject": "reference", "rules": ["FO-NEG-02"]}}}))
    for nodeid in ids:
        controller.pytest_runtest_logstart(nodeid, None)
    controller.pytest_runtest_logreport(_teardown(ids[0], _case(ids[0], "passed", "lane-a")))
    with open(f"/proc/{os.getpid()}/fd/{controller._write}", "w", buffering=1) as pipe:  # lane B started two
        pipe.write(json.dumps({"tag": "B", "text": "a/two  (FO-NEG-02)", "start": ids[1]}) + "\n")
    controller.pytest_keyboard_interrupt(None)
    _finish(controller)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["interrupted"] and results["summary"]["passed"] == 2 and results["summary"]["error"] == 2
    two, three = results["cases"][-2:]
    assert (two["id"], two["subject"], two["rules"], two["violated_rules"]) == ("a/two", "reference",
                                                                              [{"id": "FO-NEG-02", "sentence": "t."}],
                                                                              [])
    assert two["lane"] == "lane-b" and "lane" not in three
    assert three["id"] == "b/three" and three["rules"] == [] and "interrupted" in three["reason"]


def test_a_crashed_worker_is_a_run_problem(controller, tmp_path):
    controller.pytest_runtest_logstart("cases/a.py::one", None)
    controller.pytest_runtest_logreport(_teardown("cases/a.py::one", when="???"))
    controller.pytest_testnodedown(_node("gw1"), "Not properly terminated")
    _finish(controller)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["cases"] == [] and results["run_problems"] == [
        "worker 'gw1' crashed while running 'cases/a.py::one' (the case has no record)",
        "lane-b: its worker went down: Not properly terminated"]


def test_the_workers_lines_are_tagged_with_their_lane_and_numbered(controller, capsys):
    controller.pytest_xdist_node_collection_finished(_node("gw0"), ["x::a", "x::b"])
    with open(f"/proc/{os.getpid()}/fd/{controller._write}", "w", buffering=1) as pipe:
        for tag, text, start in (("A", "x/a  (FO-NEG-01)", "x::a"), ("B", "x/b  (FO-NEG-02)", "x::b"),
                                 ("A", "       PASSED in 0.1 s", None)):
            pipe.write(json.dumps({"tag": tag, "text": text, "start": start}) + "\n")
    _finish(controller)
    assert capsys.readouterr().out.splitlines() == ["[A] [ 1/2] x/a  (FO-NEG-01)", "[B] [ 2/2] x/b  (FO-NEG-02)",
                                                    "[A]        PASSED in 0.1 s"]


def test_each_worker_has_its_own_name_prefix_and_the_sweep_knows_them_all():
    assert lanes.pytest_args(1) == []
    assert lanes.pytest_args(3)[:4] == ["-n", "3", "--dist", "loadgroup"]
    prefixes = lanes.short_ids("fffffe", 3)
    assert len(set(prefixes)) == len(prefixes) == 3 + lanes.max_restarts(3)
    assert all(len(prefix) == 6 and prefix != "fffffe" for prefix in prefixes)
    assert lanes.worker_short_id("fffffe", 2) in prefixes and lanes.short_ids("abcdef", 1) == ["abcdef"]
    assert (lanes.lane_tag("gw1"), lanes.lane_name("gw2")) == ("B", "lane-c")


def test_cases_sharing_a_session_vm_get_one_xdist_group():
    def item(*fixtures):
        made = SimpleNamespace(fixturenames=list(fixtures), marks=[])
        made.add_marker = made.marks.append
        return made

    shared, alone = item("case", "failover_pair"), item("case", "vm_factory")
    lanes.group_shared([shared, alone])
    assert [(mark.name, mark.args) for mark in shared.marks] == [("xdist_group", ("failover_pair",))]
    assert alone.marks == []
    assert lanes.plain_nodeid("cases/a.py::one@failover_pair") == "cases/a.py::one"
    assert lanes.plain_nodeid("cases/a.py::one[x@y]@failover_pair+other") == "cases/a.py::one[x@y]"
    assert lanes.plain_nodeid("cases/a.py::one[x@y]") == "cases/a.py::one[x@y]"


def _reference_run(out: Path, *args):
    result = subprocess.run([str(paths.REPO / "vnetct"), "run", "--no-setup", "--profile", "reference",
                             "--out", str(out), *args], capture_output=True, text=True, timeout=180, check=False)
    run_dir = (out / "latest").resolve()
    return result, run_dir, json.loads((run_dir / "results.json").read_text())


def test_two_lanes_give_the_results_of_one_lane(tmp_path):
    one, _, alone = _reference_run(tmp_path / "one", "-j", "1")
    two, run_dir, parallel = _reference_run(tmp_path / "two", "-j", "2")
    assert one.returncode == two.returncode == 0, two.stdout[-3000:] + two.stderr[-2000:]
    # The same cases, outcomes and order (collection order), one results.json and junit.xml.
    assert [(c["id"], c["outcome"]) for c in parallel["cases"]] == [(c["id"], c["outcome"]) for c in alone["cases"]]
    assert parallel["collected"] == alone["collected"] and parallel["summary"] == alone["summary"]
    assert parallel["rules"] == alone["rules"] and parallel["finished"] and not parallel["run_problems"]
    assert parallel["sut"] == alone["sut"]
    assert (run_dir / "junit.xml").read_text().count("<testcase") == parallel["summary"]["total"]
    assert sorted(parallel["lanes"]) == ["lane-a", "lane-b"] and not (run_dir / "lane-a" / "results.json").exists()
    # Both lanes ran cases, each case says where, and its artifacts are where it says.
    assert {case["lane"] for case in parallel["cases"]} == {"lane-a", "lane-b"}
    for case in parallel["cases"]:
        assert all(path.startswith(case["lane"] + "/") and (run_dir / path).exists()
                   for path in case["artifacts"].values()), case
    # The booted failover pair is shared: one VM in one lane, every case using it in that lane.
    users = [case for case in parallel["cases"] if any("/vms/failover-pair/" in p for p in case["artifacts"].values())]
    assert len(users) >= 3 and len({case["lane"] for case in users}) == 1
    assert len(list(run_dir.glob("lane-*/vms/failover-pair"))) == 1
    lines = two.stdout.splitlines()
    assert any(line.startswith("[A] [") for line in lines) and any(line.startswith("[B] [") for line in lines)
    total = parallel["summary"]["total"]
    assert sorted(int(line.split("[", 2)[2].split("/")[0]) for line in lines if line.startswith(("[A] [", "[B] ["))
                  ) == list(range(1, total + 1))
