"""guest_event_host_ns: a guest agent's event placed on the host's clock, never
earlier than it happened, earlier than its arrival where a later report shows
it was held back."""

from hypothesis import given, settings, strategies as st

from vnetct.vm.guest import guest_event_host_ns


def _event(kind, host_ns, t_guest_ns, **data):
    return {"name": kind, "host_ns": host_ns, "data": {"event": kind, "t_guest_ns": t_guest_ns, **data}}


def test_a_batch_read_places_the_earlier_event_by_the_later_stamp():
    # Recorded in a repeated run (out-and-in, pciehp): the hot-add and the link-up the guest
    # stamped 204 ms later reached the host in one read.
    events = [_event("netdev-added", 56705007243181, 22501432449, name="eth2"),
              _event("netdev-changed", 56705007243181, 22501432449, name="eth2", operstate="down"),
              _event("netdev-changed", 56705007243181, 22705448291, name="eth2", operstate="up")]
    assert guest_event_host_ns(events, 0) == 56705007243181 - (22705448291 - 22501432449)
    assert guest_event_host_ns(events, 2) == 56705007243181


def test_without_later_evidence_the_arrival_stands():
    events = [_event("netdev-added", 1_000, 50), _event("netdev-changed", 5_000, 40)]  # a stamp going back: ignored
    assert guest_event_host_ns(events, 0) == 1_000
    assert guest_event_host_ns(events, 1) == 5_000


def test_an_untrusted_stamp_is_not_used():
    events = [_event("netdev-added", 1_000, "soon"), _event("netdev-changed", 900_000, 10**30)]
    events[1]["data"]["t_guest_ns"] = 2.5  # not an integer
    assert guest_event_host_ns(events, 0) == 1_000
    events = [_event("netdev-added", 1_000, 10), {"name": "x", "host_ns": 2_000, "data": {}}]
    assert guest_event_host_ns(events, 0) == 1_000


@settings(deadline=None, database=None)  # a loaded machine must not fail it on time; no example database in the tree
@given(st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 10**6)),
                min_size=1, max_size=12),
       st.integers(0, 10**12))
def test_never_earlier_than_the_event_nor_later_than_its_arrival(steps, offset):
    """A guest whose clock runs at the host's rate or slower (stopped spans),
    reporting each event after some delay, in order."""
    true_ns, guest_ns, arrival = offset, 0, 0
    events, truth = [], []
    for gap_ns, delay_ns, stopped_ns in steps:
        true_ns += gap_ns + stopped_ns       # the host's clock also runs while the VM is stopped
        guest_ns += gap_ns                   # the guest's does not
        arrival = max(arrival, true_ns + delay_ns)  # one channel: reports arrive in order
        events.append(_event("e", arrival, guest_ns))
        truth.append(true_ns)
    for index, happened in enumerate(truth):
        placed = guest_event_host_ns(events, index)
        assert happened <= placed <= events[index]["host_ns"]
