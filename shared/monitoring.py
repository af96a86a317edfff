"""The monitor's core: FIDI over transactions (judged row by row), and the conflict rate
over decisions; it speaks only when a state changes (drift / recovered).

Alerts (values for ``drift-alerts``, keyed by feature or detector):

* FIDI enters drift: one alert keyed ``fidi`` (statistic: the FIDI index, threshold 1.0)
  and one per drifting feature (statistic: its shift in reference standard deviations,
  threshold: ``min_effect``), all ``state = "drift"``;
* FIDI recovers: the same keys with ``state = "recovered"``;
* the conflict rate becomes elevated / normal again: key ``conflicts``.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.bundle import Bundle
from shared.drift import FIDI, ConflictRate


@dataclass
class Alert:
    detector: str
    feature: str
    statistic: float
    threshold: float
    state: str  # "drift" or "recovered"
    ts: float = field(default_factory=lambda: time.time() * 1e3)
    onset_rows: int | None = None  # FIDI's estimate of how many rows ago the drift began
    onset_ts: float | None = None  # producer timestamp (epoch ms) of the first row of that estimate

    @property
    def key(self) -> str:
        return self.feature or self.detector

    def to_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "feature": self.feature,
            "statistic": round(float(self.statistic), 6),
            "threshold": float(self.threshold),
            "state": self.state,
            "ts": int(self.ts),
            **({"onset_rows": self.onset_rows} if self.onset_rows is not None else {}),
            **({"onset_ts": int(self.onset_ts)} if self.onset_ts is not None else {}),
        }


class DriftMonitor:
    def __init__(self, bundle: Bundle, batch_rows: int = 100, **fidi: Any) -> None:
        self.batch_rows = batch_rows  # decisions per conflict-rate update
        self.fidi: FIDI = bundle.new_fidi(**fidi)
        self.conflicts = ConflictRate(float(bundle.info.get("reference_conflict_rate", 0.0)))
        self._ts: deque[float | None] = deque(maxlen=self.fidi.scales[-1])  # producer ts of recent rows
        self._conf_pending: list[bool] = []
        self._alarmed: list[str] = []
        self.conflicts_elevated = False
        self.rows = 0

    def add_transactions(self, X: np.ndarray, ts: list[float | None] | None = None) -> list[Alert]:
        if len(X) == 0:
            return []
        self.rows += len(X)
        self._ts.extend(ts if ts is not None else [None] * len(X))
        alerts: list[Alert] = []
        self.fidi.update(X)
        if self.fidi.drift_detected:
            self._alarmed = self.fidi.drifting_features
            onset = self.fidi.onset_rows()
            onset_ts = self._ts[-min(onset, len(self._ts))] if onset else None
            alerts += self._fidi_alerts("drift", onset_rows=onset, onset_ts=onset_ts)
        elif self.fidi.recovered:
            alerts += self._fidi_alerts("recovered")
            self._alarmed = []
        return alerts

    def _fidi_alerts(self, state: str, **summary: Any) -> list[Alert]:
        """The summary alert (key ``fidi``) and one per feature that alarmed."""
        effect = dict(zip(self.fidi.features, self.fidi.effect, strict=True))
        alerts = [Alert("fidi", "fidi", self.fidi.index, 1.0, state, **summary)]
        return alerts + [Alert("fidi", f, effect[f], self.fidi.min_effect, state) for f in self._alarmed]

    def add_conflicts(self, flags: list[bool]) -> list[Alert]:
        self._conf_pending += flags
        alerts: list[Alert] = []
        while len(self._conf_pending) >= self.batch_rows:
            chunk, self._conf_pending = (
                self._conf_pending[: self.batch_rows],
                self._conf_pending[self.batch_rows :],
            )
            self.conflicts.update(sum(chunk), len(chunk))
            elevated = self.conflicts.elevated
            if elevated != self.conflicts_elevated:
                self.conflicts_elevated = elevated
                state = "drift" if elevated else "recovered"
                alerts.append(
                    Alert("conflicts", "conflicts", self.conflicts.rate, self.conflicts.reference_rate, state)
                )
        return alerts
