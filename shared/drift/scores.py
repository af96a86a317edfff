"""Normal scores: each feature mapped through its training quantiles onto a standard normal.

A z-test on raw feature means assumes the mean of a few rows is near normal; a
log-normal ``amount`` breaks that at small windows (a handful of large amounts look
like a drift). Mapping every value through the training distribution's quantiles onto
N(0, 1) first, ``score = Phi^-1(F_train(x))``, makes every feature standard normal under
the reference whatever its shape, so one threshold controls false alarms on all of them.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> train = rng.lognormal(3.5, 1.0, size=(5000, 1))
>>> ns = NormalScores(reference_quantiles(train))
>>> s = ns.transform(rng.lognormal(3.5, 1.0, size=(100_000, 1)))
>>> round(float(s.mean()), 2), round(float(s.std()), 2), round(float(abs(s).max()), 2)
(0.0, 1.0, 3.09)
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike

from shared.errors import ConfigError

N_QUANTILES = 501  # quantile points per feature stored in a bundle


def reference_quantiles(X: ArrayLike, n: int = N_QUANTILES) -> np.ndarray:
    """(d, n) quantiles of each column at probabilities ``(k + 0.5) / n``."""
    x = np.asarray(X, dtype=np.float64)
    probs = (np.arange(n) + 0.5) / n
    return np.quantile(x, probs, axis=0).T.copy()


class NormalScores:
    """Maps rows (N, d) onto per-feature normal scores with the reference quantiles (d, n)."""

    def __init__(self, quantiles: ArrayLike) -> None:
        q = np.asarray(quantiles, dtype=np.float64)
        if q.ndim != 2 or q.shape[1] < 3 or not np.isfinite(q).all():
            raise ConfigError(f"quantiles must be a finite (features, >= 3) array, got shape {q.shape}")
        if (np.diff(q, axis=1) < 0).any():
            raise ConfigError("quantiles must be non-decreasing along each feature")
        self.quantiles = q
        self._ties = (np.diff(q, axis=1) == 0).any(axis=1)  # a discrete feature: a run of equal quantiles
        n = q.shape[1]
        nd = NormalDist()
        self._z = np.array([nd.inv_cdf((k + 0.5) / n) for k in range(n)])
        # Under the reference a score is the piecewise-linear image of a uniform: its mean
        # and standard deviation (about 0 and 1; the tails are clipped at +-3.09) on a fine grid.
        u = (np.arange(200_000) + 0.5) / 200_000
        grid = np.interp(u, (np.arange(n) + 0.5) / n, self._z)
        self.mean, self.std = float(grid.mean()), float(grid.std())

    @property
    def n_features(self) -> int:
        return int(self.quantiles.shape[0])

    def transform(self, X: ArrayLike) -> np.ndarray:
        x = np.asarray(X, dtype=np.float64)
        out = np.empty_like(x)
        for j in range(self.n_features):
            qj = self.quantiles[j]
            lo = np.interp(x[:, j], qj, self._z)
            if not self._ties[j]:  # strictly increasing: from above is the same line
                out[:, j] = lo
                continue
            # ties (a discrete feature) map to the middle of their quantile run
            hi = -np.interp(-x[:, j], -qj[::-1], -self._z[::-1])
            out[:, j] = 0.5 * (lo + hi)
        return out
