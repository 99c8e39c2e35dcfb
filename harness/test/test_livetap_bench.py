"""The live-TAP bench's reading of a hand-off (vnetct.livetap.bench): the
stamps of the backend's committed/serving lines and the blackout split by
them, without a backend (the lines are shaped as backend.hpp prints them)."""

from vnetct.livetap.bench import Committed, Counters, HandOff, parse_stamps, tap_state

COMMITTED = ("committed frames=10 echoed=10 first_seq=0 last_seq=9 arp=0 write_errors=0 queue_frames=10 streams=- "
             "stopped_reading_ns=1000000 committed_ns=1160000 stamps=command:900000,target_ready:990000,"
             "stopped:1000000,offer_sent:1015000,accept_received:1110000,commit_sent:1115000 realtime=1")
SERVING = ("serving name=vt0 flags=0x5002 ifindex=4 netns=0 vnet_hdr_size=12 vnet_le=0 sndbuf=0 offloads=0x7 "
           "queues=1 serving_ns=1150000 stamps=accepted:950000,nic_spawned:960000,offer_received:1030000,"
           "queues_read:1040000,distinct_checked:1045000,identity_checked:1090000,accept_sent:1120000,"
           "commit_received:1140000,reader_polling:1150000 realtime=1")


def _hand_off(committed: str = COMMITTED, serving: str = SERVING) -> HandOff:
    return HandOff.from_lines(Committed.from_line(committed), serving)


def test_the_serving_state_leaves_out_the_times():
    assert tap_state(SERVING.removeprefix("serving ")) == \
        "name=vt0 flags=0x5002 ifindex=4 netns=0 vnet_hdr_size=12 vnet_le=0 sndbuf=0 offloads=0x7 queues=1"


def test_the_blackout_splits_at_the_steps_inside_it_in_the_protocols_order():
    hop = _hand_off()
    # accept_sent is stamped after accept_received here (the target was descheduled after its
    # send): arrivals mark the steps, so it is not a boundary; steps before the stop are not either.
    assert hop.breakdown_us() == [("stopped -> offer_sent", 15.0), ("offer_sent -> offer_received", 15.0),
                                  ("offer_received -> queues_read", 10.0), ("queues_read -> distinct_checked", 5.0),
                                  ("distinct_checked -> identity_checked", 45.0),
                                  ("identity_checked -> accept_received", 20.0),
                                  ("accept_received -> commit_received", 30.0),
                                  ("commit_received -> serving", 10.0)]
    assert sum(us for _, us in hop.breakdown_us()) == hop.blackout_us == 150.0


def test_the_lines_say_whether_each_side_ran_its_window_at_real_time_priority():
    hop = _hand_off()
    assert (hop.stopped_reading_ns, hop.committed_ns, hop.serving_ns) == (1_000_000, 1_160_000, 1_150_000)
    assert hop.realtime == {"source": True, "target": True}
    assert hop.priority() == "real-time on both sides"
    # An unprivileged target (or VNETCT_HANDOFF_REALTIME=0): said, so that the figure says how it was obtained.
    plain = _hand_off(serving=SERVING.replace("realtime=1", "realtime=0"))
    assert plain.realtime == {"source": True, "target": False}
    assert plain.priority() == "normal priority: target"
    older = _hand_off(COMMITTED.replace(" realtime=1", ""), SERVING.replace(" realtime=1", ""))
    assert older.priority() == "normal priority: source and target"


def test_a_line_without_stamps_gives_none():
    assert parse_stamps("serving name=vt0 serving_ns=5") == {}
    assert parse_stamps("committed frames=1 stamps=-") == {}


# --- a sink's record (vnetct.livetap.sink): the seqs read as runs, holder after holder

def _counters(runs: str, streams: str = "-") -> Counters:
    return Counters.parse(f"stopped frames=0 echoed=0 first_seq=- last_seq=- arp=0 write_errors=0 queue_frames=- "
                          f"streams={streams} runs={runs}")


def test_runs_are_read_with_their_truncation():
    counters = _counters("00000000000000aa:0-4,7-9;00000000000000bb:0-1,...")
    assert counters.runs == {0xAA: ([(0, 4), (7, 9)], True), 0xBB: ([(0, 1)], False)}
    assert _counters("-").runs == {}


def test_holders_runs_laid_end_to_end_are_the_arrivals_and_a_gap_is_a_loss():
    from vnetct.core.native import vnetct_native
    from vnetct.livetap.sink import read_arrivals
    sent_ns = [1000 * seq for seq in range(10)]
    source, target = _counters("00000000000000aa:0-3"), _counters("00000000000000aa:5-9")
    arrivals, problems = read_arrivals(0xAA, [source, target], sent_ns)
    assert problems == []
    assert [seq for seq, _ in arrivals] == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    report = vnetct_native.analyze_stream(sent_ns, arrivals, [("before", 0), ("handoff", 3500), ("after", 4500)],
                                          10_000)
    assert (report["overall"]["lost"], report["overall"]["duplicates"], report["overall"]["reordered"]) == (1, 0, 0)
    assert [p["lost"] for p in report["phases"]] == [0, 1, 0]


def test_a_seq_read_twice_is_a_duplicate_and_a_truncated_or_impossible_record_is_said():
    from vnetct.livetap.sink import read_arrivals
    sent_ns = [1000 * seq for seq in range(4)]
    arrivals, problems = read_arrivals(0xAA, [_counters("00000000000000aa:0-2"), _counters("00000000000000aa:2-3")],
                                       sent_ns)
    assert [seq for seq, _ in arrivals] == [0, 1, 2, 2, 3] and problems == []
    _, problems = read_arrivals(0xAA, [_counters("00000000000000aa:0-1,..."), _counters("00000000000000aa:2-9")],
                                sent_ns)
    assert "truncated after seq 1" in problems[0]
    assert "reports seqs 2-9, the flow sent 0-3" in problems[1]
