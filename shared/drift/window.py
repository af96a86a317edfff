"""WindowFIDI: the first FIDI, judged once per batch on a window of batch means.

Kept for the seed protocol (``alpha=None, min_effect=1.0`` on V14 is the research
system's detector) and as the baseline the row-level :class:`~shared.drift.fidi.FIDI`
replaced: it mixes pre- and post-drift batches in its window and judges at batch
granularity, so it alarms late.

Each ``update`` adds one batch. Over the last ``window`` batches FIDI takes every
feature's mean ``m`` and compares it with the reference mean ``mu`` and standard
deviation ``sigma``:

* effect size ``e = |m - mu| / sigma`` (the research system's "z-score");
* significance ``z = e * sqrt(n)``, ``n`` the rows in the window.

A feature drifts when both are large: ``e >= min_effect`` (the shift matters) and
``z >= z_crit``, where ``z_crit`` is the two-sided normal quantile for a family-wise
false-alarm rate ``alpha`` split over all features (Bonferroni), so adding features
does not add false alarms. The index is ``max_j min(e_j / min_effect, z_j / z_crit)``:
drift when it reaches 1. Hysteresis: once in drift, FIDI reports recovery only after
the index stays below ``recovery`` for ``patience`` updates in a row.

With ``alpha=None`` the significance test is off and FIDI is the research system's
detector (``min_effect=1.0`` on V14, window 10, at least 3 batches).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(42)
>>> fidi = WindowFIDI(mean=np.zeros(5), std=np.ones(5), features=list("abcde"))
>>> for i in range(60):
...     batch = rng.normal(0.0, 1.0, size=(100, 5))
...     if i >= 30:
...         batch[:, 2] += 1.0   # feature "c" shifts by one standard deviation
...     _ = fidi.update(batch)
...     if fidi.drift_detected:
...         print(f"drift at batch {i}: {fidi.drifting_features}")
drift at batch 32: ['c']
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike

from shared.drift.base import MeanShiftDetector
from shared.errors import ConfigError


class WindowFIDI(MeanShiftDetector):
    """Windowed z-scores of feature means against a reference, with false-alarm control.

    Parameters
    ----------
    mean, std
        Reference per-feature mean and standard deviation (from training data).
    window
        Number of most recent batches whose rows form the window.
    min_batches
        Batches needed before FIDI judges at all.
    alpha
        Family-wise false-alarm rate per update across all features; ``None`` turns the
        significance test off.
    min_effect
        Smallest shift of a feature mean, in reference standard deviations, that counts.
    recovery
        Index below which, for ``patience`` updates in a row, a drift is over.
    """

    def __init__(
        self,
        mean: ArrayLike,
        std: ArrayLike,
        *,
        features: Sequence[str] | None = None,
        window: int = 10,
        min_batches: int = 3,
        alpha: float | None = 0.001,
        min_effect: float = 0.25,
        recovery: float = 0.5,
        patience: int = 3,
    ) -> None:
        super().__init__(mean, std, features)
        if window < 1 or not 1 <= min_batches <= window:
            raise ConfigError(f"need window >= 1 and 1 <= min_batches <= window, got {window}, {min_batches}")
        if alpha is not None and not 0.0 < alpha < 1.0:
            raise ConfigError(f"alpha must lie in (0, 1) or be None, got {alpha}")
        if min_effect <= 0 or not 0 < recovery <= 1 or patience < 1:
            raise ConfigError("need min_effect > 0, 0 < recovery <= 1 and patience >= 1")
        self.window, self.min_batches = window, min_batches
        self.alpha, self.min_effect = alpha, min_effect
        self.recovery, self.patience = recovery, patience
        d = self.mean.size
        self.z_crit = 0.0 if alpha is None else NormalDist().inv_cdf(1.0 - alpha / (2 * d))
        self._sums: deque[np.ndarray] = deque(maxlen=self.window)
        self._counts: deque[int] = deque(maxlen=self.window)
        self._n_updates = 0

    def update(self, batch: ArrayLike) -> WindowFIDI:
        """Add one batch of rows (N, d); returns self."""
        x = self._rows(batch)
        if x.shape[0] == 0:
            return self
        self._check_finite(x)
        self._sums.append(x.sum(axis=0))
        self._counts.append(x.shape[0])
        self._n_updates += 1
        self._n_rows += x.shape[0]
        self._drift_detected = self._recovered = False
        if len(self._counts) < self.min_batches:
            return self
        n = sum(self._counts)
        m = np.sum(self._sums, axis=0) / n
        self._effect = np.abs(m - self.mean) / self.std
        self._z = self._effect * np.sqrt(n)
        per_feature = self._effect / self.min_effect
        if self.z_crit > 0:
            per_feature = np.minimum(per_feature, self._z / self.z_crit)
        self._per_feature = per_feature
        self._index = float(per_feature.max())
        if not self._in_drift and self._index >= 1.0:
            self._in_drift = self._drift_detected = True
            self._calm = 0
        elif self._in_drift:
            self._calm = self._calm + 1 if self._index < self.recovery else 0
            if self._calm >= self.patience:
                self._in_drift, self._recovered = False, True
        return self

    # -- read-only state (the rest in MeanShiftDetector)
    @property
    def detected_at(self) -> int | None:
        """0 on the update that entered drift (the whole batch is judged at once), else None."""
        return 0 if self._drift_detected else None

    @property
    def drifting_features(self) -> list[str]:
        if self._n_updates == 0 or len(self._counts) < self.min_batches:
            return []
        return super().drifting_features

    @property
    def top_feature(self) -> str | None:
        if len(self._counts) < self.min_batches:
            return None
        return self.features[int(np.argmax(self._per_feature))]

    @property
    def n_updates(self) -> int:
        return self._n_updates

    def onset_rows(self) -> int:
        """Estimated rows since the drift began: the suffix of the window whose mean shift is
        most significant on the drifting features (the change-point estimate for a mean shift).
        """
        feats = [self.features.index(f) for f in self.drifting_features]
        if not feats:
            return 0
        sums = np.asarray(self._sums)[:, feats]  # (batches, k), oldest first
        counts = np.asarray(self._counts, dtype=np.float64)
        suffix_n = np.cumsum(counts[::-1])
        suffix_mean = np.cumsum(sums[::-1], axis=0) / suffix_n[:, None]
        z = np.abs(suffix_mean - self.mean[feats]) / self.std[feats] * np.sqrt(suffix_n)[:, None]
        return int(suffix_n[int(np.argmax(z.max(axis=1)))])
