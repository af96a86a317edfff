"""The benchmark's targets, in one table: each says what it checks and how it reads, so
the PASS/FAIL lines and the table's target column come from the same place.

>>> r = {"heal_cycle_ms": 120.0}
>>> [(t.name, t.check(r)) for t in TARGETS if t.row == "heal"]
[('heal cycle <= 1 s', True)]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Results = dict[str, Any]


@dataclass(frozen=True)
class Target:
    name: str  # how it reads, e.g. "heal cycle <= 1 s"
    row: str  # the figure row of the table it belongs to
    value: Callable[[Results], float | None]  # the figure it judges (None: not measured)
    limit: float
    at_least: bool = False  # the figure must be >= limit (else <= limit)

    def check(self, r: Results) -> bool | None:
        """True when met, False when missed, None when the figure was not measured."""
        v = self.value(r)
        if v is None:
            return None
        return v >= self.limit if self.at_least else v <= self.limit


def _p99_at_10k(r: Results) -> float | None:
    p99 = r.get("latency_ms", {}).get("10000", {}).get("p99")
    return None if p99 is None else float(p99)


def _longest_gap_over_passthrough(swaps: bool) -> Callable[[Results], float | None]:
    """The scorer loop's longest gap between batches over the passthrough's in the same
    phase (the loop timelines): in the swap phase, or the worst of the fixed-rate phases."""

    def ratio(r: Results) -> float | None:
        worst = None
        for phase, roles in r.get("timeline", {}).items():
            if (phase == "swap") != swaps:
                continue
            s, p = (roles.get(k, {}).get("gap_ms", {}).get("max") for k in ("scorer", "passthrough"))
            if s and p:
                worst = max(worst or 0.0, float(s) / float(p))
        return worst

    return ratio


def _p99_over_passthrough(rate: str) -> Callable[[Results], float | None]:
    def ratio(r: Results) -> float | None:
        scorer = r.get("latency_ms", {}).get(rate, {}).get("p99")
        base = r.get("passthrough_latency_ms", {}).get(rate, {}).get("p99")
        return None if not scorer or not base else float(scorer) / float(base)

    return ratio


def _log_over_scorer(r: Results) -> float | None:
    writes = r.get("feature_log", {}).get("log", {}).get("write_rows_per_s")
    scorer = r.get("scorer_tps_1")
    return None if not writes or not scorer else float(writes) / float(scorer)


def _monitor_over_scorer(r: Results) -> float | None:
    monitor, scorer = r.get("monitor_tps"), r.get("scorer_tps_1")
    return None if not monitor or not scorer else float(monitor) / float(scorer)


def _group_agrees(r: Results) -> float | None:
    """1.0 when two monitors in a group raised one monitor's alerts on every stream, each
    FIDI alarm within the window it was raised on; else 0.0 (None: not measured)."""
    streams = r.get("monitor_group_agreement")
    if not streams:
        return None
    for s in streams.values():
        shifts = s["alarm_shift_rows"]["group"]
        if not s["same_alerts"]["group"] or shifts is None:
            return 0.0
        if any(abs(d) > w for d, w in zip(shifts, s["alarm_window_rows"], strict=True)):
            return 0.0
    return 1.0


TARGETS = (  # throughput, latency, swaps, memory, the feature log, the scorer against passthrough
    Target(
        "scorer >= 50k tx/s per process", "scorer", lambda r: r.get("scorer_tps_1"), 50_000, at_least=True
    ),
    Target("scorer >= 35% of passthrough", "scorer", lambda r: r.get("scorer_ratio"), 0.35, at_least=True),
    Target("scorer >= 50% of passthrough", "scorer", lambda r: r.get("scorer_ratio"), 0.5, at_least=True),
    Target("p99 <= 1.1x passthrough at 1k tx/s", "latency1000", _p99_over_passthrough("1000"), 1.1),
    Target("p99 <= 1.1x passthrough at 3k tx/s", "latency3000", _p99_over_passthrough("3000"), 1.1),
    Target("p99 <= 1.1x passthrough at 10k tx/s", "latency10000", _p99_over_passthrough("10000"), 1.1),
    Target("p99 <= 50 ms at 10k tx/s", "latency10000", _p99_at_10k, 50.0),
    Target("publish -> use <= 1 s", "swap", lambda r: r.get("swap_publish_to_use_ms"), 1000.0),
    Target(
        "longest gap in the swap phase <= 1.5x passthrough's there",
        "gaps",
        _longest_gap_over_passthrough(True),
        1.5,
    ),
    Target(
        "longest gap at fixed rates <= 1.5x passthrough's in the same phase",
        "gaps",
        _longest_gap_over_passthrough(False),
        1.5,
    ),
    Target("heal cycle <= 1 s", "heal", lambda r: r.get("heal_cycle_ms"), 1000.0),
    Target("healing costs scoring <= 10%", "healing", lambda r: r.get("healing_throughput_drop"), 0.10),
    Target("feature log writes >= 2x scorer throughput", "log", _log_over_scorer, 2.0, at_least=True),
    Target("monitor >= 2x one scorer", "monitor", _monitor_over_scorer, 2.0, at_least=True),
    Target(
        "two monitors in a group alarm as one (+-1 window)", "monitorgroup", _group_agrees, 1.0, at_least=True
    ),
)


def check_targets(r: Results) -> dict[str, bool | None]:
    return {t.name: t.check(r) for t in TARGETS}


def targets_of(row: str) -> str:
    """The targets of one figure row, as the table shows them."""
    return "; ".join(t.name for t in TARGETS if t.row == row) or "-"
