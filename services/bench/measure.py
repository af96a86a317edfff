"""The benchmark's arithmetic (pure, tested): percentiles, rates, batch gaps, profiles and
Prometheus samples."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np


def percentiles(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "n": 0.0}
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {
        "p50": round(float(p50), 2),
        "p95": round(float(p95), 2),
        "p99": round(float(p99), 2),
        "n": int(a.size),
    }


def median_rounds(rounds: Sequence[dict[str, float]]) -> dict[str, Any]:
    """Several runs' percentiles as one: each figure the median of the rounds' (``n`` and
    ``lost`` summed), and every round's p99 under ``rounds_p99``.

    >>> median_rounds([{"p99": 10.0, "n": 5}, {"p99": 900.0, "n": 5}, {"p99": 12.0, "n": 5}])
    {'p99': 12.0, 'n': 15, 'rounds_p99': [10.0, 900.0, 12.0]}
    """
    out: dict[str, Any] = {}
    for key in rounds[0]:
        values = [r[key] for r in rounds if key in r]
        out[key] = int(sum(values)) if key in ("n", "lost") else round(float(np.median(values)), 2)
    out["rounds_p99"] = [r.get("p99") for r in rounds]
    return out


def rate_after(timestamps_ms: Sequence[float], since_ms: float) -> tuple[float, int]:
    """(messages per second, count) of the timestamps after ``since_ms``, timed from ``since_ms``
    to the last of them."""
    after = [t for t in timestamps_ms if t > since_ms]
    if len(after) < 2:
        return float("nan"), len(after)
    span = (max(after) - since_ms) / 1e3
    return (len(after) / span if span > 0 else float("nan")), len(after)


def batch_times(scored_at_ms: Sequence[float], tolerance_ms: float = 0.01) -> list[float]:
    """The distinct batch times in decisions' scoring times (a batch shares one clock reading;
    the rounding of ``latency_ms`` makes them differ by less than ``tolerance_ms``)."""
    out: list[float] = []
    for t in sorted(scored_at_ms):
        if not out or t - out[-1] > tolerance_ms:
            out.append(t)
    return out


def swap_gaps(batches: Sequence[float], start_ms: float, end_ms: float) -> list[float]:
    """Gaps between consecutive batches that overlap [start_ms, end_ms]."""
    return [b - a for a, b in pairwise(batches) if b >= start_ms and a <= end_ms]


def _function(frame: str) -> str:
    """``name (path/file.py:line)`` -> ``name (file.py)``: samples add up per function."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit('/', 1)[-1].split(':')[0].rstrip(')')})" if where else name


def profile_summary(raw: str, top: int = 15) -> dict[str, list[tuple[str, float]]]:
    """From py-spy's raw output (``frame;frame;... count`` per line): the share of samples
    in which each function is on the stack (inclusive) and at the top (self)."""
    total = 0
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_function(f) for f in stack.split(";")]
        for f in set(frames):
            inclusive[f] = inclusive.get(f, 0) + n
        own[frames[-1]] = own.get(frames[-1], 0) + n

    def share(d: dict[str, int]) -> list[tuple[str, float]]:
        ranked = sorted(d.items(), key=lambda kv: -kv[1])[:top]
        return [(name, round(100 * c / max(total, 1), 1)) for name, c in ranked]

    return {"samples": [("all", float(total))], "inclusive_pct": share(inclusive), "self_pct": share(own)}


def metric(text: str, name: str) -> float:
    """The sum of the samples of ``name`` (any labels) in Prometheus text."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total
