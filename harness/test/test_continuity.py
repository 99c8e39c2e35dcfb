"""vnetct.traffic.continuity.undelivered: loss windows less the datagrams the
host is shown to have handed to the guest."""

from hypothesis import given, settings, strategies as st

from vnetct.traffic.continuity import undelivered

SENT = [1_000_000 * i for i in range(40)]  # one datagram a millisecond


def _window(first, last, end_ns=None):
    return {"first_seq": first, "last_seq": last, "count": last - first + 1, "start_ns": SENT[first],
            "end_ns": SENT[last + 1] if end_ns is None else end_ns,
            "duration_ms": ((SENT[last + 1] if end_ns is None else end_ns) - SENT[first]) / 1e6}


def test_nothing_delivered_leaves_the_windows_as_they_are():
    windows = [_window(3, 7), _window(20, 22)]
    assert undelivered(windows, set(), SENT) == windows


def test_delivered_datagrams_split_a_window_and_shorten_it():
    remaining = undelivered([_window(3, 12)], {3, 4, 8, 9, 10, 11, 12}, SENT)
    assert remaining == [_window(5, 7)]
    remaining = undelivered([_window(3, 12)], {6}, SENT)
    assert remaining == [_window(3, 5), _window(7, 12)]


def test_a_window_wholly_delivered_is_gone():
    assert undelivered([_window(3, 12)], set(range(3, 13)), SENT) == []


def test_a_window_at_the_stream_end_keeps_its_end():
    last = len(SENT) - 1
    window = _window(30, last, end_ns=SENT[last])
    assert undelivered([window], {30}, SENT) == [_window(31, last, end_ns=SENT[last])]


@settings(deadline=None, database=None)  # a loaded machine must not fail it on time; no example database in the tree
@given(st.lists(st.integers(0, 38), unique=True), st.integers(0, 30), st.integers(0, 8))
def test_every_undelivered_loss_is_kept_once(delivered, first, length):
    last = min(first + length, 38)
    remaining = undelivered([_window(first, last)], set(delivered), SENT)
    kept = [seq for w in remaining for seq in range(w["first_seq"], w["last_seq"] + 1)]
    assert kept == [seq for seq in range(first, last + 1) if seq not in set(delivered)]
    assert all(w["count"] == w["last_seq"] - w["first_seq"] + 1 for w in remaining)


def _bound(earliest_ns, latest_ns, longest_ms):
    from vnetct.traffic.continuity import LossBound
    return LossBound("re-plug", "the hot-add", earliest_ns, "the link-up + 20 ms", latest_ns, longest_ms, "test")


def test_a_lagging_guest_moves_the_edges_by_its_latency():
    """Recorded in a repeated run (out-and-in, pciehp, 2026-12-03): a guest
    plugging the primary echoed 657 ms late just before the loss and 67 ms
    late just after it; the window, 579 ms of datagrams, ended 4 ms past the
    link-up + 20 ms. On a path of 20 ms it breaks the bound three ways."""
    from vnetct.traffic.continuity import violations
    ms = 1_000_000
    window = {"first_seq": 10, "last_seq": 125, "count": 116, "start_ns": 1_000 * ms, "end_ns": 1_579 * ms,
              "duration_ms": 579.0}
    bound = _bound(1_010 * ms, 1_575 * ms, 540.0)
    assert len(violations([window], bound)) == 2  # lasted past, too long (began 10 ms early: inside 20 ms)
    lagging = {10: 657.0, 127: 67.0}  # latency_ms(seq): the round trip of the last echo before seq
    assert violations([window], bound, lambda seq: lagging.get(seq, 2.0)) == []
    # The lag excuses what it explains, no more: 60 ms past the end is beyond 67 - 20 ms.
    late = {**window, "end_ns": 1_635 * ms, "duration_ms": 635.0}
    found = violations([late], bound, lambda seq: lagging.get(seq, 2.0))
    assert len(found) == 1 and "lasted 60 ms past" in found[0]
