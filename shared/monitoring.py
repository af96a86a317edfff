"""The monitor's core: FIDI over transactions (judged row by row), and the conflict rate
over decisions; it speaks only when a state changes (drift / recovered).

Alerts (values for ``drift-alerts``, keyed by feature or detector):

* FIDI enters drift: one alert keyed ``fidi`` (statistic: the FIDI index, threshold 1.0)
  and one per drifting feature (statistic: its shift in reference standard deviations,
  threshold: ``min_effect``), all ``state = "drift"``;
* FIDI recovers: the same keys with ``state = "recovered"``;
* the conflict rate becomes elevated / normal again: key ``conflicts``; the ``drift`` one
  says the drift began ``onset_rows`` back: the rows of the fewest batches the conflict
  rate alarms on (``min_batches`` x ``batch_rows``);
* a bundle with category fields: the chi-square test of their frequencies
  (:class:`~shared.drift.categories.CategoryShift`) enters drift / recovers: one alert
  keyed ``categories`` (its index, threshold 1.0; ``onset_rows``: the most telling
  window) and one per field that moved (statistic: Cohen's w; ``category``, ``share``
  and ``reference_share`` name the category that moved most).

The healer opens and closes its episodes on the summary alerts (``fidi``, ``conflicts``,
``categories``): :mod:`shared.healing.episodes`.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from shared.bundle import Bundle
from shared.drift import FIDI, ConflictRate, WindowFIDI
from shared.drift.fidi import SCALES
from shared.messages import Alert
from shared.messages.alerts import Detail


class DriftMonitor:
    def __init__(
        self, bundle: Bundle, batch_rows: int = 100, detector: FIDI | WindowFIDI | None = None, **fidi: Any
    ) -> None:
        self.batch_rows = batch_rows  # decisions per conflict-rate update
        self.fidi = detector if detector is not None else bundle.new_fidi(**fidi)
        self.conflicts = ConflictRate(float(bundle.info.get("reference_conflict_rate", 0.0)))
        self.categories = bundle.new_category_shift()
        longest = self.fidi.scales[-1] if isinstance(self.fidi, FIDI) else SCALES[-1]
        self._ts: deque[float | None] = deque(maxlen=longest)  # event times of the rows an onset can name
        self.alarm_rows: list[int] = []  # the row (counted from the first one seen) of each FIDI alarm
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
            self.alarm_rows.append(self.rows - len(X) + (self.fidi.detected_at or 0))
            self._alarmed = self.fidi.drifting_features
            onset = self.fidi.onset_rows()
            onset_ts = self._ts[-min(onset, len(self._ts))] if onset else None
            alerts += self._fidi_alerts("drift", onset_rows=onset, onset_ts=onset_ts)
        elif self.fidi.recovered:
            alerts += self._fidi_alerts("recovered")
            self._alarmed = []
        if self.categories is not None:
            alerts += self._category_alerts(X)
        return alerts

    def _category_alerts(self, X: np.ndarray) -> list[Alert]:
        cat = self.categories
        assert cat is not None
        cat.update(X)
        if not (cat.drift_detected or cat.recovered):
            return []
        if cat.recovered:
            return [Alert("categories", "categories", cat.index, 1.0, "recovered")]
        onset = cat.onset_rows()
        onset_ts = self._ts[-min(onset, len(self._ts))]
        alerts = [
            Alert("categories", "categories", cat.index, 1.0, "drift", onset_rows=onset, onset_ts=onset_ts)
        ]
        effect = dict(zip(cat.fields, cat.effect, strict=True))
        for field, (category, share, reference) in cat.moved.items():
            details: dict[str, Detail] = {"category": category, "share": share, "reference_share": reference}
            alerts.append(Alert("categories", field, effect[field], cat.min_effect, "drift", details=details))
        return alerts

    @property
    def alarmed(self) -> list[str]:
        """The features the current FIDI drift alarmed on (empty outside a drift)."""
        return list(self._alarmed)

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
                c = self.conflicts
                onset = c.min_batches * self.batch_rows if elevated else None
                alerts.append(
                    Alert("conflicts", "conflicts", c.rate, c.reference_rate, state, onset_rows=onset)
                )
        return alerts
