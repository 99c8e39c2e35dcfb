"""vnetct.traffic.continuity.undelivered: loss windows less the datagrams the
host is shown to have handed to the guest."""

from hypothesis import given, strategies as st

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


@given(st.lists(st.integers(0, 38), unique=True), st.integers(0, 30), st.integers(0, 8))
def test_every_undelivered_loss_is_kept_once(delivered, first, length):
    last = min(first + length, 38)
    remaining = undelivered([_window(first, last)], set(delivered), SENT)
    kept = [seq for w in remaining for seq in range(w["first_seq"], w["last_seq"] + 1)]
    assert kept == [seq for seq in range(first, last + 1) if seq not in set(delivered)]
    assert all(w["count"] == w["last_seq"] - w["first_seq"] + 1 for w in remaining)
