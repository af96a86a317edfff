"""A drift in *where* the frozen model errs, seen on arrived labels: a score test.

A concept switch can leave the frozen model's average log loss nearly where it was (it
now errs with confidence on some rows and is right on others) while costing a quarter
more. What moves is the residual ``y - p`` against the inputs: on the training
distribution a calibrated model's residuals are uncorrelated with every input, after a
switch they follow the features whose meaning changed. Each labelled row contributes the
score vector ``g = (y - p) * [1, z]`` (``z``: the inputs standardised on the reference
rows), the gradient of the log loss with respect to a logistic correction on top of the
frozen model. The detector compares the mean of the newest ``rows`` score vectors with
the mean on the reference rows (the bundle's validation rows, where the model errs only
as it did in training) by Hotelling's statistic with the pooled covariance, against the
chi-square quantile at ``alpha``: a false alarm about once in ``1 / alpha`` tests when
nothing changed. It tests every ``every`` rows once the window is full and holds at least
``min_frauds`` frauds (fewer make the covariance of the mean meaningless), and recovers
when the statistic falls below the chi-square median. The onset it names is the event
time of the window's oldest row.

>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(4000, 3))
>>> p = 1 / (1 + np.exp(-(X[:, 0] - 2)))              # the frozen model, right in training
>>> det = ResidualDrift.from_reference(X, (rng.random(4000) < p).astype(float), p, rows=1000, every=100)
>>> Xs = rng.normal(size=(3000, 3))
>>> ps = 1 / (1 + np.exp(-(Xs[:, 0] - 2)))
>>> y = (rng.random(3000) < 1 / (1 + np.exp(-(Xs[:, 0] + 2 * Xs[:, 1] - 2)))).astype(float)
>>> det.update((rng.random(1000) < ps[:1000]).astype(float), ps[:1000], Xs[:1000], np.arange(1000.0))
[]
>>> det.update(y[1000:], ps[1000:], Xs[1000:], np.arange(1000.0, 3000.0))  # feature 1 now matters
[('drift', 400.0)]

The alarm comes 400 rows into the switch; the window it names starts at row 400, 600 rows
before the switch (a 1,000-row window that began before it).
"""

from __future__ import annotations

from collections import deque
from statistics import NormalDist

import numpy as np

from shared.errors import ConfigError


def chi2_isf(alpha: float, dof: int) -> float:
    """The chi-square upper ``alpha`` quantile (Wilson-Hilferty; within 1% for dof >= 3)."""
    z = NormalDist().inv_cdf(1.0 - alpha)
    c = 2.0 / (9.0 * dof)
    return float(dof * (1.0 - c + z * np.sqrt(c)) ** 3)


class ResidualDrift:
    def __init__(
        self,
        center: np.ndarray,
        scale: np.ndarray,
        keep: np.ndarray,
        ref_scores: np.ndarray,
        rows: int = 3000,
        alpha: float = 1e-6,
        every: int = 250,
        min_frauds: int = 20,
    ) -> None:
        if rows < 100 or not 0 < alpha < 0.5 or every < 1 or len(ref_scores) < 100:
            raise ConfigError(
                f"need rows >= 100, 0 < alpha < 0.5, every >= 1, >= 100 reference rows; "
                f"got {rows}, {alpha}, {every}, {len(ref_scores)}"
            )
        self.center, self.scale, self.keep = center, scale, keep
        self.rows, self.alpha, self.every, self.min_frauds = rows, alpha, every, min_frauds
        self.ref_mean = ref_scores.mean(axis=0)
        self.ref_cov = np.cov(ref_scores.T)
        self.ref_n = len(ref_scores)
        self.dof = ref_scores.shape[1]
        self.threshold = chi2_isf(alpha, self.dof)
        self.recover_at = chi2_isf(0.5, self.dof)
        self._g: deque[np.ndarray] = deque(maxlen=rows)
        self._y: deque[float] = deque(maxlen=rows)
        self._ts: deque[float] = deque(maxlen=rows)
        self._since = 0
        self._drift = False
        self.last_statistic = 0.0

    @classmethod
    def from_reference(cls, X: np.ndarray, y: np.ndarray, p: np.ndarray, **kw: float | int) -> ResidualDrift:
        """The reference from rows where the frozen model errs only as in training: inputs
        ``X``, labels ``y``, its probabilities ``p``. Constant inputs are left out."""
        sd = X.std(axis=0)
        keep = sd > 1e-9
        center, scale = np.where(keep, X.mean(axis=0), 0.0), np.where(keep, sd, 1.0)
        return cls(center, scale, keep, _scores(X, y, p, center, scale, keep), **kw)  # type: ignore[arg-type]

    @property
    def drift_detected(self) -> bool:
        return self._drift

    @property
    def onset_ts(self) -> float | None:
        """Event time of the oldest row of the window (where the drift may have begun)."""
        return self._ts[0] if self._ts else None

    def statistic(self) -> float:
        """Hotelling's statistic of the window's mean score against the reference's."""
        G = np.asarray(self._g)
        n = len(G)
        pooled = (np.cov(G.T) * (n - 1) + self.ref_cov * (self.ref_n - 1)) / (n + self.ref_n - 2)
        cov = np.atleast_2d(pooled) * (1.0 / n + 1.0 / self.ref_n)
        cov += np.eye(self.dof) * 1e-6 * max(float(np.trace(cov)) / self.dof, 1e-12)
        d = G.mean(axis=0) - self.ref_mean
        return float(d @ np.linalg.solve(cov, d))

    def update(
        self, y: np.ndarray, p: np.ndarray, X: np.ndarray, ts: np.ndarray
    ) -> list[tuple[str, float | None]]:
        """Labelled rows in arrival order (labels, frozen probabilities, inputs, event
        times); each change of state as (state, onset event time)."""
        G = _scores(X, y, p, self.center, self.scale, self.keep)
        out: list[tuple[str, float | None]] = []
        for g, yi, t in zip(G, np.asarray(y, dtype=np.float64).tolist(), ts.tolist(), strict=True):
            self._g.append(g)
            self._y.append(yi)
            self._ts.append(t)
            self._since += 1
            if len(self._g) < self.rows or self._since < self.every or sum(self._y) < self.min_frauds:
                continue
            self._since = 0
            self.last_statistic = s = self.statistic()
            if not self._drift and s > self.threshold:
                self._drift = True
                out.append(("drift", self.onset_ts))
            elif self._drift and s < self.recover_at:
                self._drift = False
                out.append(("recovered", self.onset_ts))
        return out


def _scores(
    X: np.ndarray, y: np.ndarray, p: np.ndarray, center: np.ndarray, scale: np.ndarray, keep: np.ndarray
) -> np.ndarray:
    z = ((np.asarray(X, dtype=np.float64) - center) / scale)[:, keep]
    r = np.asarray(y, dtype=np.float64) - np.asarray(p, dtype=np.float64)
    return np.column_stack([np.ones(len(r)), z]) * r[:, None]
