"""Fixtures of the failover cases: one booted failover guest shared by the
negotiation, pairing and datapath cases (a TCG boot costs seconds)."""

import pytest

from vnetct.failover.guest import FailoverGuest, failover_spec


@pytest.fixture(scope="session")
def failover_pair(session_factory) -> FailoverGuest:
    vm = session_factory.vm_booted(failover_spec("failover-pair"))
    return FailoverGuest(vm)
