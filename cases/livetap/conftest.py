"""Fixtures of the live-TAP cases: `livetap_bench`, what one case against the
reference backend owns (vnetct.livetap.Bench: a wire, backend processes,
streams), stopped and leak-checked when the case ends, pass or fail."""

import pytest

from vnetct.livetap.bench import Bench


@pytest.fixture
def livetap_bench(vm_factory, case):
    bench = Bench(vm_factory, case, vm_factory.run)
    try:
        yield bench
    finally:
        problems = bench.close()
    if problems:
        raise AssertionError("live-TAP bench teardown: " + "; ".join(problems))
