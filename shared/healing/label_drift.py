"""A drift only the labels can show: the frozen model's loss on arrived labels.

A concept switch, a fraud ring on features nobody watched, a fraud rate that rose while the
features barely moved: none of them need move a feature's mean, so the unlabelled
detectors stay quiet and no episode opens. Labels do show them. Every arrived label is
scored by the frozen model (the bundle's own adapter) on its logged features, and its
log loss enters a window of the last ``rows``; the window's mean is compared with the same
model's log loss on its validation rows. The detector is in drift when the mean is at
least ``rel`` above the reference *and* ``z`` standard errors above it (the per-row
variance measured on the validation rows); it recovers when the mean is back within half
that margin. Log loss rather than cost: the cost matrix's 1/10 weights make a per-row cost
too noisy to see a change of a tenth in a window of a thousand rows. The onset it names is
the event time of the window's oldest row: what healing may train on.

>>> det = LossDrift(mean=0.2, var=1.0, rows=100, z=4.0, rel=0.25)
>>> for k in range(100):
...     state = det.update(0.0, ts=float(k))        # cheaper than the reference: no drift
>>> state, det.drift_detected
(None, False)
>>> for k in range(100, 200):
...     state = det.update(10.0 if k % 10 == 0 else 0.0, ts=float(k))   # 1.0 a row
...     if state:
...         break
>>> state, k, det.onset_ts
('drift', 160, 61.0)
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.errors import ConfigError
from shared.healing.residual_drift import ResidualDrift

if TYPE_CHECKING:
    from shared.bundle import Bundle
    from shared.model import SelfHealingModel


class LossDrift:
    def __init__(self, mean: float, var: float, rows: int = 1000, z: float = 4.0, rel: float = 0.25) -> None:
        if rows < 10 or z <= 0 or rel < 0 or var <= 0 or mean < 0:
            raise ConfigError(
                f"need rows >= 10, z > 0, rel >= 0, var > 0, mean >= 0; got {rows}, {z}, {rel}, {var}"
            )
        self.mean, self.var, self.rows, self.z, self.rel = mean, var, rows, z, rel
        self._losses: deque[float] = deque(maxlen=rows)
        self._ts: deque[float] = deque(maxlen=rows)
        self._sum = 0.0
        self._drift = False

    @classmethod
    def from_losses(cls, losses: np.ndarray, **kw: Any) -> LossDrift:
        """The reference from per-row losses on held-out rows (the bundle's validation rows)."""
        if len(losses) < 10:
            raise ConfigError(f"need at least 10 reference losses, got {len(losses)}")
        return cls(float(np.mean(losses)), max(float(np.var(losses)), 1e-6), **kw)

    @property
    def drift_detected(self) -> bool:
        return self._drift

    @property
    def onset_ts(self) -> float | None:
        """Event time of the oldest row of the window (where the drift may have begun)."""
        return self._ts[0] if self._ts else None

    @property
    def window_mean(self) -> float:
        return self._sum / len(self._losses) if self._losses else float("nan")

    def statistic(self) -> float:
        """Standard errors of the window's mean above the reference."""
        n = len(self._losses)
        return (self.window_mean - self.mean) / float(np.sqrt(self.var / n)) if n else 0.0

    def update(self, loss: float, ts: float) -> str | None:
        """One labelled row's frozen-model loss; ``drift`` or ``recovered`` when the state changes."""
        if len(self._losses) == self.rows:
            self._sum -= self._losses[0]
        self._losses.append(loss)
        self._ts.append(ts)
        self._sum += loss
        if len(self._losses) < self.rows:
            return None
        m = self.window_mean
        if not self._drift and m > self.mean * (1 + self.rel) and self.statistic() > self.z:
            self._drift = True
            return "drift"
        if self._drift and m <= self.mean * (1 + self.rel / 2):
            self._drift = False
            return "recovered"
        return None


def log_loss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per-row binary log loss (probabilities clipped to [1e-6, 1 - 1e-6])."""
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    yy = np.asarray(y, dtype=np.float64)
    return -(yy * np.log(q) + (1 - yy) * np.log1p(-q))


class LossWatch:
    """The frozen model scoring arrived labels into the healer's labels-side detectors: a
    :class:`LossDrift` (``labels_loss``) and a
    :class:`~shared.healing.residual_drift.ResidualDrift` (``labels_residual``), either of
    them off (None)."""

    def __init__(
        self, model: SelfHealingModel, loss: LossDrift | None, residual: ResidualDrift | None = None
    ) -> None:
        self.model, self.detector, self.residual = model, loss, residual

    @classmethod
    def for_bundle(
        cls,
        bundle: Bundle,
        loss: dict[str, Any] | None,
        residual: dict[str, Any] | None = None,
        model: SelfHealingModel | None = None,
    ) -> LossWatch | None:
        """Both detectors' references from the frozen model (``model``, or the bundle's own)
        on the bundle's validation rows, each with its settings (None: that one is off).
        None when both are off or the bundle has fewer than 100 validation rows."""
        ref = bundle.reference_rows
        if (loss is None and residual is None) or ref is None or ref.validation.sum() < 100:
            return None
        model = model or bundle.new_model()
        X, y = ref.X[ref.validation], ref.y[ref.validation]
        p = model.predict_proba(X)
        det = LossDrift.from_losses(log_loss(y, p), **loss) if loss is not None else None
        res = ResidualDrift.from_reference(X, y, p, **residual) if residual is not None else None
        return cls(model, det, res)

    def update(self, labels: np.ndarray, rows: np.ndarray) -> list[tuple[str, str, float | None]]:
        """Labelled feature-log ``rows``, in arrival order; each change of state as
        (detector, state, onset event time)."""
        if not len(labels):
            return []
        X = np.ascontiguousarray(rows["x"])
        p = self.model.predict_proba(X)
        out: list[tuple[str, str, float | None]] = []
        if (det := self.detector) is not None:
            for loss, ts in zip(log_loss(labels, p).tolist(), rows["ts"].tolist(), strict=True):
                if (state := det.update(loss, ts)) is not None:
                    out.append(("labels_loss", state, det.onset_ts))
        if self.residual is not None:
            ts = np.asarray(rows["ts"], dtype=np.float64)
            out += [("labels_residual", s, t) for s, t in self.residual.update(labels, p, X, ts)]
        return out
