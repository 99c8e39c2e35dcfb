"""Conformance cases. The vnetct plugin (harness/python/vnetct/plugin.py) is
loaded by `vnetct run` with -p vnetct.plugin; it gives the fixtures used here
(case, run_context, session_factory, vm_factory)."""

import pytest

from vnetct.traffic import wire_faults


@pytest.fixture(autouse=True)
def wire_impairments(request):
    """The wire impairments of the run's seeded fault (vnetct.traffic.wire_faults)
    are active during the case; what each rule dropped goes into
    impairments.json, read before the case's namespaces are deleted. Without
    such a fault: nothing."""
    planned = wire_faults.planned_for(request.getfixturevalue("run_context"))
    if not planned:
        yield
        return
    case = request.getfixturevalue("case")
    request.getfixturevalue("vm_factory")  # set up first, so torn down after this fixture
    wire_faults.activate(wire_faults.Plan(planned, case.step))
    try:
        yield
    finally:
        case.save_json("impairments.json", wire_faults.deactivate())
