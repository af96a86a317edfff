"""What every pass of a batch loop did, to find where a stall came from.

A pass is: ``poll`` for the first message (waiting, if nothing is there) -> ``tick`` ->
``handle`` -> produce-side bookkeeping. For each pass the timeline keeps when it started,
how long each part took, how many messages it took, how old the first of them was on
arrival (its record timestamp against the wall clock: time spent before this process had
it), and how long Python's garbage collector ran during it. From those, every gap between
two batches gets a cause: the loop was **waiting** for input, **busy** (tick, handle,
bookkeeping), or stopped by the **gc**.

Off by default; ``SELFHEAL_TIMELINE=DIR`` makes every service keep one and write
``DIR/<service>-<pid>.json`` when it stops (the benchmark reads them).

>>> t = LoopTimeline(capacity=8)
>>> for k in range(4):  # four passes of 10 ms: 8 waiting for input, 2 busy
...     t.record(start=k * 0.010, got=k * 0.010 + 0.008, n=5, age_ms=3.0, tick=0.0, handled=0.001, end=0.001)
>>> s = t.summary()
>>> (s["batches"], s["gap_ms"]["median"], s["gap_ms"]["max"], s["widest_gaps"][0]["cause"])
(4, 10.0, 10.0, 'waiting')
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

ENV = "SELFHEAL_TIMELINE"
FIELDS = ("start", "wait", "n", "age_ms", "tick", "handle", "rest", "gc")  # seconds but n and age_ms


class LoopTimeline:
    """The last ``capacity`` passes of a loop, in a preallocated array (no allocation per pass)."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.rows = np.zeros((capacity, len(FIELDS)), dtype=np.float64)
        self.size = 0  # passes recorded (the array keeps the last ``capacity``)
        self._gc_started: float | None = None
        self._gc_seconds = 0.0  # collector time since the last record
        self.gc_pauses: list[tuple[float, int, float]] = []  # (monotonic start, generation, seconds)

    # -- the garbage collector, through gc.callbacks
    def attach(self) -> LoopTimeline:
        gc.callbacks.append(self._on_gc)
        return self

    def detach(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._gc_started = now
        elif self._gc_started is not None:
            spent = now - self._gc_started
            self._gc_seconds += spent
            if info.get("generation", 0) == 2 or spent > 0.005:
                self.gc_pauses.append((self._gc_started, info.get("generation", 0), spent))
            self._gc_started = None

    # -- one pass (perf_counter readings; ``tick``, ``handled``, ``end`` are durations)
    def record(
        self, start: float, got: float, n: int, age_ms: float, tick: float, handled: float, end: float
    ) -> None:
        row = self.rows[self.size % len(self.rows)]
        row[:] = (start, got - start, n, age_ms, tick, handled, end, self._gc_seconds)
        self._gc_seconds = 0.0
        self.size += 1

    def passes(self) -> np.ndarray:
        """The recorded passes, oldest first, one row per pass (columns: ``FIELDS``)."""
        k = min(self.size, len(self.rows))
        if self.size <= len(self.rows):
            return self.rows[:k].copy()
        cut = self.size % len(self.rows)
        return np.concatenate([self.rows[cut:], self.rows[:cut]])

    def summary(self, top: int = 10) -> dict[str, Any]:
        return summarise([self.passes()], self.gc_pauses, top)

    def write(self, directory: str | Path, service: str) -> Path:
        path = Path(directory) / f"{service}-{os.getpid()}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "service": service,
            "fields": FIELDS,
            "passes": self.passes().round(6).tolist(),
            "gc_pauses": self.gc_pauses,
            "summary": self.summary(),
        }
        path.write_bytes(orjson.dumps(doc))
        return path


def _gaps(p: np.ndarray) -> dict[str, np.ndarray]:
    """One run of consecutive passes: every gap between two batches (ms), the part of it
    spent waiting in ``poll`` and in the collector, the next batch's age on arrival; and
    the batches' handle times."""
    cols = {f: p[:, i] for i, f in enumerate(FIELDS)}
    got = cols["start"] + cols["wait"]
    batch = np.flatnonzero(cols["n"] > 0)
    gaps = np.diff(got[batch]) * 1e3
    waits, gcs = np.zeros(len(gaps)), np.zeros(len(gaps))
    for k in range(len(gaps)):  # a gap: batch k's own work, the empty passes, batch k+1's wait
        lo, hi = batch[k], batch[k + 1]
        waits[k] = cols["wait"][lo + 1 : hi + 1].sum() * 1e3
        gcs[k] = cols["gc"][lo:hi].sum() * 1e3
    return {
        "gaps": gaps,
        "waits": waits,
        "gcs": gcs,
        "ages": cols["age_ms"][batch],
        "age_next": cols["age_ms"][batch[1:]],
        "handle": cols["handle"][batch] * 1e3,
        "gc": cols["gc"] * 1e3,
    }


def summarise(
    runs: list[np.ndarray], gc_pauses: Sequence[tuple[float, int, float]] = (), top: int = 10
) -> dict[str, Any]:
    """Gaps between batches and their causes, from runs of consecutive passes (see
    ``FIELDS``; a gap never spans two runs).

    A gap runs from one batch's arrival to the next's; it is split into the time the loop
    spent waiting in ``poll`` (nothing had arrived), busy (tick, handle, bookkeeping, the
    poll calls that returned at once) and in the garbage collector (inside the busy time)."""
    parts = [_gaps(p) for p in runs if len(p)]
    out: dict[str, Any] = {"passes": int(sum(len(p) for p in runs))}
    g = {k: np.concatenate([x[k] for x in parts]) for k in parts[0]} if parts else {}
    out["batches"] = len(g["ages"]) if g else 0
    if not g or len(g["gaps"]) == 0:
        return out
    gaps, waits, gcs = g["gaps"], g["waits"], g["gcs"]
    busy = gaps - waits

    def pct(a: np.ndarray, *qs: int) -> dict[str, float]:
        return {f"p{q}": round(float(np.percentile(a, q)), 2) for q in qs} | {"max": round(float(a.max()), 2)}

    out.update(
        {
            "gap_ms": {"median": round(float(np.median(gaps)), 2), **pct(gaps, 99)},
            "age_at_receipt_ms": pct(g["ages"], 50, 99),
            "handle_ms": pct(g["handle"], 50),
            "busy_ms": pct(busy, 50, 99),
            "gc_ms": {
                "total": round(float(g["gc"].sum()), 1),
                "max_pass": round(float(g["gc"].max()), 2),
                "gen2": sum(1 for _, gen, _ in gc_pauses if gen == 2),
            },
            "widest_gaps": [
                {
                    "gap_ms": round(float(gaps[k]), 2),
                    "waiting_ms": round(float(waits[k]), 2),
                    "busy_ms": round(float(busy[k]), 2),
                    "gc_ms": round(float(gcs[k]), 2),
                    "age_after_ms": round(float(g["age_next"][k]), 2),
                    "cause": cause(float(waits[k]), float(busy[k]), float(gcs[k])),
                }
                for k in np.argsort(gaps)[::-1][:top]
            ],
        }
    )
    return out


def cause(waiting_ms: float, busy_ms: float, gc_ms: float) -> str:
    """The part of a gap that took most of it: ``waiting`` (for input), ``gc``, or ``busy``.

    >>> cause(30.0, 2.0, 0.0), cause(1.0, 40.0, 35.0), cause(1.0, 40.0, 0.0)
    ('waiting', 'gc', 'busy')
    """
    if waiting_ms >= busy_ms:
        return "waiting"
    return "gc" if gc_ms >= busy_ms / 2 else "busy"
