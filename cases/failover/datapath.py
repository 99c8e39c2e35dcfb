"""The failover master carries traffic: a paced UDP stream from the wire's
peer to the guest's address and back, through the primary.

The stream runs until the primary is up in the guest (net_failover opens it
with the master; the e1000e's link comes up seconds later: QEMU 7.2 ~2.5 s)
and one second passed without loss (a freshly formed pair settles: the link-up
costs a burst, see failover/migrate/out-and-in), then one judged second
follows: every datagram echoed, none doubled or reordered, and the primary
sent every echo."""

import pytest

from vnetct.failover.guest import MAC
from vnetct.traffic.echo import EchoStream, describe_losses, phase, snapshot, wait_slave_up

JUDGED_DATAGRAMS = 200  # one second at the stream's 200 datagrams/s


@pytest.mark.rule("FO-DATA-01")
@pytest.mark.needs("datapath")
def test_udp_echo_through_master(failover_pair, case):
    case.uses(failover_pair.vm)
    vm = failover_pair.vm
    negotiation = failover_pair.negotiate()
    stream = EchoStream(vm, case, negotiation.role("master")["name"]).start()
    try:
        wait_slave_up(vm, MAC, "primary")  # opened with the master; its link comes up later
        clean_ns = stream.wait_clean(1.0)
        first = snapshot(vm, "judged-start", MAC)
        stream.wait_echoes(JUDGED_DATAGRAMS, 30)
        last = snapshot(vm, "judged-end", MAC)
        echoes = stream.echoes_between(first.answered_ns, last.asked_ns)
        report = stream.stop([("settle", stream.started_ns), ("judged", clean_ns)])
    finally:
        stream.close()
    judged = phase(report, "judged")
    tx = {role: last.counters[role]["tx_packets"] - first.counters[role]["tx_packets"]
          for role in ("master", "standby", "primary")}
    case.save_json("slave-counters.json", {"echoes": echoes, "tx": tx,
                                           "snapshots": [first.to_json(), last.to_json()]})
    for role, sent in tx.items():
        case.metric(f"{role}_tx_packets", sent)
    assert judged["lost"] == 0 and judged["duplicates"] == 0 and judged["reordered"] == 0, \
        f"{describe_losses(judged)}; {judged['duplicates']} doubled, {judged['reordered']} reordered"
    assert tx["master"] >= echoes and tx["primary"] >= echoes and tx["standby"] == 0, \
        f"{echoes} echoes came back; sent by master/primary/standby: {tx}"
