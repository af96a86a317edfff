"""Labels held until their transaction's cohort is complete.

Under a fraud team's feedback (:mod:`shared.feedback`) the labels of recent transactions
are not a sample of them: analysts answer first, and only on the alerts the live model
scored highest; chargebacks follow weeks later, and a genuine transaction is labelled only
when its chargeback window closes. A healer that reads the first labels as the truth
about recent traffic learns that traffic is mostly fraud. Held until ``settle_ms`` of
event time after their transaction (the latest any of its cohort's labels can come), the
labels that reach healing, its guards and its gate are the whole cohort's: late, but
drawn from every transaction alike.

>>> import numpy as np
>>> from shared.healing.featurelog import FeatureLog
>>> log = FeatureLog(None, 1, horizon_ms=1e6, budget_bytes=1 << 20)
>>> rows = np.zeros(3, dtype=log.dtype)
>>> rows["ts"] = [10.0, 50.0, 30.0]
>>> hold = CohortHold(settle_ms=100.0)
>>> hold.add(["a", "b", "c"], np.array([1, 0, 0], np.float32), rows)
>>> hold.due(watermark=125.0)[0], hold.held          # a's cohort (ts 10) closed at 110
(['a'], 2)
>>> hold.due(watermark=200.0)[0], hold.held          # then c's (30), b's (50)
(['c', 'b'], 0)
"""

from __future__ import annotations

import numpy as np


class CohortHold:
    def __init__(self, settle_ms: float) -> None:
        self.settle_ms = settle_ms
        self._ids: list[str] = []
        self._labels = np.zeros(0, np.float32)
        self._rows: np.ndarray | None = None

    @property
    def held(self) -> int:
        return len(self._ids)

    def add(self, ids: list[str], labels: np.ndarray, rows: np.ndarray) -> None:
        """Joined labels: transaction ids, labels, their feature-log rows."""
        if not ids:
            return
        self._ids += ids
        self._labels = np.concatenate([self._labels, labels])
        self._rows = rows if self._rows is None else np.concatenate([self._rows, rows])

    def due(self, watermark: float) -> tuple[list[str], np.ndarray, np.ndarray] | None:
        """The held labels whose transaction is at least ``settle_ms`` older than
        ``watermark``, oldest transaction first (None: nothing held)."""
        rows = self._rows
        if rows is None or not self._ids:
            return None
        ready = rows["ts"] <= watermark - self.settle_ms
        order = np.flatnonzero(ready)[np.argsort(rows["ts"][ready], kind="stable")]
        out = ([self._ids[k] for k in order], self._labels[order], rows[order])
        keep = np.flatnonzero(~ready)
        self._ids = [self._ids[k] for k in keep]
        self._labels, self._rows = self._labels[keep], rows[keep]
        return out
