"""The loop timeline's arithmetic: gaps between batches, and what filled each one."""

from __future__ import annotations

import gc

import numpy as np

from shared.kafka.timeline import FIELDS, LoopTimeline, cause, summarise


def _pass(start: float, wait: float, n: int, busy: float, gc_s: float = 0.0, age: float = 5.0) -> list[float]:
    return [start, wait, n, age, 0.0, busy, 0.0, gc_s]


def test_a_gap_is_split_into_waiting_busy_and_gc() -> None:
    assert FIELDS == ("start", "wait", "n", "age_ms", "tick", "handle", "rest", "gc")
    rows = [
        _pass(0.000, 0.001, 3, 0.001),  # batch 0 arrives at 1 ms
        _pass(0.002, 0.008, 0, 0.000),  # nothing came: 8 ms waiting
        _pass(0.010, 0.001, 3, 0.030, gc_s=0.025),  # batch 1 at 11 ms, then 30 ms busy (25 in the gc)
        _pass(0.041, 0.000, 3, 0.001, age=40.0),  # batch 2 at 41 ms: it waited in the queue
    ]
    s = summarise([np.array(rows)])
    assert s["batches"] == 3 and s["gap_ms"]["max"] == 30.0
    widest, second = s["widest_gaps"]
    assert widest["cause"] == "gc" and widest["gc_ms"] == 25.0 and widest["age_after_ms"] == 40.0
    assert second["gap_ms"] == 10.0 and second["waiting_ms"] == 9.0 and second["cause"] == "waiting"


def test_gaps_never_span_two_runs() -> None:
    run = np.array([_pass(t, 0.001, 1, 0.001) for t in (0.0, 0.01, 0.02)])
    s = summarise([run, run + np.array([100.0, 0, 0, 0, 0, 0, 0, 0])])
    assert s["batches"] == 6 and s["gap_ms"]["max"] == 10.0


def test_the_ring_keeps_the_newest_passes_and_the_collector_is_timed() -> None:
    t = LoopTimeline(capacity=3).attach()
    try:
        for k in range(5):
            if k == 4:
                gc.collect()
            t.record(k * 1.0, k * 1.0 + 0.5, 1, 0.0, 0.0, 0.0, 0.0)
    finally:
        t.detach()
    p = t.passes()
    assert p[:, 0].tolist() == [2.0, 3.0, 4.0] and t.size == 5
    assert p[-1, FIELDS.index("gc")] > 0 and any(gen == 2 for _, gen, _ in t.gc_pauses)
    assert cause(1.0, 0.5, 0.0) == "waiting"
