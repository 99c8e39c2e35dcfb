"""The failover master carries traffic: UDP from the wire's peer to the
guest's address and back."""

import socket
import statistics
import struct
import time

import pytest

from vnetct.trace import assert_trace_conformant

from vnetct.native import vnetct_native

GUEST_ADDRESS = "198.18.0.2"
ECHO_PORT = 7777
DATAGRAMS = 50


def _echo_of(peer, sequence, deadline):
    """The echo carrying `sequence`, or None by the deadline; late echoes of
    earlier datagrams are dropped (they were already counted as lost)."""
    while (left := deadline - time.monotonic()) > 0:
        peer.settimeout(left)
        try:
            reply, sender = peer.recvfrom(2048)
        except socket.timeout:
            return None
        if sender[0] == GUEST_ADDRESS and len(reply) >= 4 and struct.unpack("!I", reply[:4])[0] == sequence:
            return reply
    return None


@pytest.mark.rule("FO-DATA-01")
def test_udp_echo_through_master(failover_pair, case):
    case.uses(failover_pair.vm)
    vm = failover_pair.vm
    if vm.wire is None:
        pytest.skip("this SUT profile has no datapath (no TAP, no guest network stack)")
    negotiation = failover_pair.negotiate()
    master = negotiation.role("master")["name"]
    vm.request("ip-config", {"ifname": master, "address": f"{GUEST_ADDRESS}/24"})
    vm.request("udp-echo", {"port": ECHO_PORT})
    before = {n["name"]: n["statistics"] for n in vm.report()}
    fd = vnetct_native.open_socket_in_netns(vm.wire.netns, socket.AF_INET, socket.SOCK_DGRAM)
    rtts, lost = [], []
    with socket.socket(fileno=fd) as peer:
        case.step(f"{DATAGRAMS} UDP datagrams from the peer to {GUEST_ADDRESS}:{ECHO_PORT}")
        for sequence in range(DATAGRAMS):
            payload = struct.pack("!I", sequence) + b"vnetct" * 8
            sent = time.monotonic()
            peer.sendto(payload, (GUEST_ADDRESS, ECHO_PORT))
            reply = _echo_of(peer, sequence, deadline=sent + 3.0)
            if reply is None:
                lost.append(sequence)
                continue
            assert reply == payload, f"echo {sequence} came back altered"
            rtts.append(time.monotonic() - sent)
    after = {n["name"]: n["statistics"] for n in vm.report()}
    deltas = {name: {k: after[name][k] - before[name][k] for k in ("rx_packets", "tx_packets")}
              for name in after if name in before}
    case.save_json("slave-counters.json", deltas)
    for role in ("master", "standby", "primary"):
        name = negotiation.role(role)["name"]
        case.metric(f"{role}_tx_packets", deltas[name]["tx_packets"])
        case.metric(f"{role}_rx_packets", deltas[name]["rx_packets"])
    assert not lost, f"{len(lost)} of {DATAGRAMS} datagrams got no echo within 3 s: {lost[:10]}"
    case.metric("rtt_median", round(statistics.median(rtts) * 1000, 3), "ms")
    assert deltas[master]["tx_packets"] >= DATAGRAMS, "the echoes did not leave through the failover master"
    assert_trace_conformant(case, failover_pair.vm)
