"""How labels reach a fraud team: analysts' feedback on the alerts they can check,
chargebacks on the fraud nobody stopped, and silence taken as genuine.

Dal Pozzolo et al. ("Credit Card Fraud Detection: a Realistic Modeling and a Novel
Learning Strategy", IEEE TNNLS 2018) describe the feedback of a real card-fraud system:

* **analyst**: investigators check the highest-scored alerts, ``capacity`` per ``period``
  of event time, and answer ``delay`` after the transaction. Their labels describe only
  what the live model already scored high. Here an alert is checked if its live score is
  at least the ``capacity``-th highest alert score of the previous period (the first
  period: the first ``capacity`` alerts), while the period's capacity lasts.
* **chargeback**: fraud nobody checked surfaces ``delay`` later with ``probability``;
  fraud an analyst confirmed was blocked and never charges back.
* **implied**: a transaction nobody labelled is taken as genuine ``delay`` after it (the
  chargeback window) - fraud that never charged back included.

A spec names the parts in use, durations in ``ms``, ``s``, ``m``, ``h`` or ``d`` of event time
(:mod:`shared.units`; offline, one transaction is one millisecond):

>>> m = FeedbackModel.parse("analyst:100/10s:2s,chargeback:20s:0.8,implied:30s")
>>> m.analyst
Analyst(capacity=100, period_ms=10000.0, delay_ms=2000.0)
>>> m.chargeback, m.implied
(Chargeback(delay_ms=20000.0, probability=0.8), Implied(delay_ms=30000.0))
>>> for part in m.describe().split("; "):
...     print(part)
analysts check 100 alerts per 10s, answering 2s later
unchecked fraud charges back 20s later (80%)
the rest is implied genuine 30s later
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass

import numpy as np

from shared.errors import ConfigError
from shared.units import format_duration, parse_duration

SOURCES = ("analyst", "chargeback", "customer", "implied")  # what a label record's ``source`` may say


def metric_source(source: str | None) -> str:
    """A label source as a metric label: one of ``SOURCES``, ``unknown`` (none said) or
    ``other`` (a word of its own: kept by name in ``/health``, bounded here).

    >>> metric_source("analyst"), metric_source(None), metric_source("partner-bank")
    ('analyst', 'unknown', 'other')
    """
    if source is None:
        return "unknown"
    return source if source in SOURCES else "other"


@dataclass(frozen=True)
class Analyst:
    capacity: int  # alerts checked per period
    period_ms: float  # event time of one period (a day)
    delay_ms: float  # from the transaction to the analyst's verdict


@dataclass(frozen=True)
class Chargeback:
    delay_ms: float  # from the transaction to the chargeback
    probability: float  # share of unchecked fraud that ever charges back


@dataclass(frozen=True)
class Implied:
    delay_ms: float  # a transaction unlabelled this long is taken as genuine


@dataclass(frozen=True)
class FeedbackModel:
    analyst: Analyst | None = None
    chargeback: Chargeback | None = None
    implied: Implied | None = None

    @classmethod
    def parse(cls, spec: str) -> FeedbackModel:
        """``analyst:CAPACITY/PERIOD:DELAY,chargeback:DELAY:PROBABILITY,implied:DELAY`` (any subset)."""
        parts: dict[str, object] = {}
        for item in filter(None, (p.strip() for p in spec.split(","))):
            name, *args = item.split(":")
            try:
                if name == "analyst" and len(args) == 2 and "/" in args[0]:
                    cap, period = args[0].split("/", 1)
                    parts[name] = Analyst(int(cap), parse_duration(period), parse_duration(args[1]))
                elif name == "chargeback" and len(args) == 2:
                    parts[name] = Chargeback(parse_duration(args[0]), float(args[1]))
                elif name == "implied" and len(args) == 1:
                    parts[name] = Implied(parse_duration(args[0]))
                else:
                    raise ConfigError(f"cannot read {item!r}")
            except ValueError as exc:
                raise ConfigError(f"cannot read {item!r}: {exc}") from exc
        model = cls(**parts)  # type: ignore[arg-type]
        model.check()
        return model

    def check(self) -> None:
        a, c = self.analyst, self.chargeback
        if a is None and c is None and self.implied is None:
            raise ConfigError("a feedback model needs at least one of analyst, chargeback, implied")
        if a is not None and (a.capacity < 1 or a.period_ms <= 0 or a.delay_ms < 0):
            raise ConfigError(f"analyst needs capacity >= 1, a period > 0 and a delay >= 0: {a}")
        if c is not None and (c.delay_ms < 0 or not 0 <= c.probability <= 1):
            raise ConfigError(f"chargeback needs a delay >= 0 and a probability in [0, 1]: {c}")
        if self.implied is not None and self.implied.delay_ms < 0:
            raise ConfigError(f"implied needs a delay >= 0: {self.implied}")

    @property
    def horizon_ms(self) -> float:
        """The latest any label of a transaction arrives."""
        parts = (self.analyst, self.chargeback, self.implied)
        return max((p.delay_ms for p in parts if p is not None), default=0.0)

    def spec(self) -> str:
        """The spec :meth:`parse` reads back to this model.

        >>> FeedbackModel.parse("implied:30s, analyst:100/10s:2s").spec()
        'analyst:100/10s:2s,implied:30s'
        """
        out = []
        if (a := self.analyst) is not None:
            out.append(f"analyst:{a.capacity}/{format_duration(a.period_ms)}:{format_duration(a.delay_ms)}")
        if (c := self.chargeback) is not None:
            out.append(f"chargeback:{format_duration(c.delay_ms)}:{c.probability:g}")
        if (i := self.implied) is not None:
            out.append(f"implied:{format_duration(i.delay_ms)}")
        return ",".join(out)

    def describe(self) -> str:
        out = []
        if (a := self.analyst) is not None:
            per, late = format_duration(a.period_ms), format_duration(a.delay_ms)
            out.append(f"analysts check {a.capacity} alerts per {per}, answering {late} later")
        if (c := self.chargeback) is not None:
            late = format_duration(c.delay_ms)
            out.append(f"unchecked fraud charges back {late} later ({c.probability:.0%})")
        if (i := self.implied) is not None:
            out.append(f"the rest is implied genuine {format_duration(i.delay_ms)} later")
        return "; ".join(out)


@dataclass(frozen=True)
class Arrived:
    """Labels due now, in arrival order."""

    rows: np.ndarray  # (n,) int: the transactions' positions in the stream
    labels: np.ndarray  # (n,) float32
    at: np.ndarray  # (n,) float: arrival event time (ms)
    sources: list[str]

    def __len__(self) -> int:
        return len(self.rows)


class FeedbackStream:
    """The feedback model applied to a stream as it is decided: :meth:`decided` queues each
    transaction's label (if any) for its arrival time; :meth:`due` returns what has arrived.

    >>> fb = FeedbackStream(FeedbackModel.parse("analyst:1/10ms:5ms,chargeback:20ms:1,implied:30ms"))
    >>> fb.decided(np.arange(4), np.arange(4.0), np.array([0.9, 0.2, 0.8, 0.1]),
    ...            np.array([True, False, True, False]), np.array([1, 1, 0, 0]))
    >>> got = fb.due(100.0)
    >>> got.rows.tolist(), got.labels.tolist(), got.sources
    ([0, 1, 2, 3], [1.0, 1.0, 0.0, 0.0], ['analyst', 'chargeback', 'implied', 'implied'])
    >>> fb.checked.tolist()   # the first alert used the period's one check
    [True, False, False, False]
    """

    def __init__(self, model: FeedbackModel, seed: int = 0) -> None:
        self.model = model
        self.rng = np.random.default_rng(seed)
        self._queue: list[tuple[float, int, float, str]] = []
        self._period = -1  # the analysts' current period
        self._left = 0  # checks left in it
        self._cut = -np.inf  # an alert's score must reach this to be checked
        self._scores: list[float] = []  # this period's alert scores (for the next period's cut)
        self._checked: list[bool] = []
        self.counts: Counter[str] = Counter()  # labels queued, by source

    @property
    def checked(self) -> np.ndarray:
        """Per decided transaction, whether an analyst checked it."""
        return np.array(self._checked, bool)

    def decided(
        self, rows: np.ndarray, ts: np.ndarray, scores: np.ndarray, alerts: np.ndarray, y: np.ndarray
    ) -> None:
        """Transactions as they are decided: stream positions, event times, live scores,
        whether each raised an alert, and their truth."""
        m = self.model
        for r, t, s, alert, truth in zip(
            rows.tolist(), ts.tolist(), scores.tolist(), alerts.tolist(), y.tolist(), strict=True
        ):
            checked = bool(alert) and self._check(t, s)
            self._checked.append(checked)
            if checked and m.analyst is not None:
                self._push(t + m.analyst.delay_ms, r, truth, "analyst")
            elif truth > 0.5 and m.chargeback is not None and self.rng.random() < m.chargeback.probability:
                self._push(t + m.chargeback.delay_ms, r, 1.0, "chargeback")
            elif m.implied is not None:
                self._push(t + m.implied.delay_ms, r, 0.0, "implied")

    def _check(self, t: float, score: float) -> bool:
        a = self.model.analyst
        if a is None:
            return False
        period = int(t // a.period_ms)
        if period != self._period:
            if self._period >= 0 and len(self._scores) >= a.capacity:
                self._cut = float(np.sort(self._scores)[-a.capacity])
            self._period, self._left, self._scores = period, a.capacity, []
        self._scores.append(score)
        if self._left > 0 and score >= self._cut:
            self._left -= 1
            return True
        return False

    def _push(self, at: float, row: int, label: float, source: str) -> None:
        heapq.heappush(self._queue, (at, row, float(label), source))
        self.counts[source] += 1

    def due(self, now: float) -> Arrived:
        """Every label whose arrival time is at most ``now``."""
        out: list[tuple[float, int, float, str]] = []
        while self._queue and self._queue[0][0] <= now:
            out.append(heapq.heappop(self._queue))
        return Arrived(
            np.array([o[1] for o in out], int),
            np.array([o[2] for o in out], np.float32),
            np.array([o[0] for o in out], float),
            [o[3] for o in out],
        )


def precision_at_k(scores: np.ndarray, y: np.ndarray, ts: np.ndarray, k: int, period_ms: float) -> np.ndarray:
    """Per period of event time, the share of fraud among its ``k`` highest scores (P@k):
    the precision of the alerts a team that checks ``k`` a period would see.

    >>> scores, y = np.array([0.9, 0.1, 0.8, 0.7]), np.array([1, 0, 0, 1])
    >>> precision_at_k(scores, y, ts=np.arange(4.0), k=1, period_ms=2.0).tolist()
    [1.0, 0.0]
    """
    period = (np.asarray(ts) // period_ms).astype(int)
    out = []
    for p in np.unique(period):
        idx = np.flatnonzero(period == p)
        top = idx[np.argsort(-scores[idx], kind="stable")[:k]]
        out.append(float(np.mean(y[top] > 0.5)) if len(top) else float("nan"))
    return np.array(out)
