"""What the detectors share: the read-only state a caller reads after ``update`` (River's
detector style) with the row-level hysteresis of FIDI and CategoryShift, and FIDI's and
WindowFIDI's training reference and batch checks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from shared.errors import ConfigError


class DriftState:
    """In drift or not, and what the last ``update`` changed; row-level detectors also say
    at which row of the batch and how many rows they have seen."""

    def __init__(self) -> None:
        self._index = 0.0
        self._in_drift = False
        self._drift_detected = False
        self._recovered = False
        self._calm = 0
        self._detected_at: int | None = None
        self._n_rows = 0

    def _new_batch(self) -> None:
        self._drift_detected = self._recovered = False
        self._detected_at = None

    def _step(self, index: np.ndarray, longest: np.ndarray, recovery: float, recovery_rows: int) -> int:
        """Advance by one batch of per-row indices; returns the row whose state to report.
        Outside drift, the first row whose ``index`` reaches 1 enters it; in drift, it ends
        after ``recovery_rows`` rows in a row whose ``longest`` (the longest full window's
        index) stays below ``recovery``."""
        b = len(index)
        at = b - 1
        if not self._in_drift:
            hits = np.flatnonzero(index >= 1.0)
            if hits.size:
                at = int(hits[0])
                self._in_drift = self._drift_detected = True
                self._detected_at, self._calm = at, 0
        else:
            # the calm run after each row: rows since the last one at or above ``recovery``
            last_break = np.maximum.accumulate(np.where(longest >= recovery, np.arange(b), -1))
            run = np.where(last_break >= 0, np.arange(b) - last_break, self._calm + np.arange(1, b + 1))
            done = np.flatnonzero(run >= recovery_rows)
            if done.size:
                at = int(done[0])
                self._in_drift, self._recovered, self._calm = False, True, 0
            else:
                self._calm = int(run[-1])
        self._n_rows += b
        self._index = float(index[at])
        return at

    @property
    def drift_detected(self) -> bool:
        """True on the update that entered drift."""
        return self._drift_detected

    @property
    def recovered(self) -> bool:
        """True on the update that left drift."""
        return self._recovered

    @property
    def in_drift(self) -> bool:
        return self._in_drift

    @property
    def index(self) -> float:
        """The index: drift when it reaches 1.0."""
        return self._index

    @property
    def detected_at(self) -> int | None:
        """Row of the last batch (0-based) at which drift was detected, or None."""
        return self._detected_at

    @property
    def rows_seen(self) -> int:
        return self._n_rows


class MeanShiftDetector(DriftState):
    """A drift detector on feature means against a reference ``mean`` and ``std`` per feature."""

    def __init__(self, mean: ArrayLike, std: ArrayLike, features: Sequence[str] | None) -> None:
        super().__init__()
        self.mean = np.asarray(mean, dtype=np.float64).ravel()
        self.std = np.maximum(np.asarray(std, dtype=np.float64).ravel(), 1e-8)
        d = self.mean.size
        if self.mean.shape != self.std.shape or d == 0:
            raise ConfigError("mean and std must be non-empty and of the same length")
        self.features = list(features) if features is not None else [str(j) for j in range(d)]
        if len(self.features) != d:
            raise ConfigError(f"{len(self.features)} feature names for {d} features")
        self._per_feature = np.zeros(d)  # each feature's index: drifting at 1.0
        self._effect = np.zeros(d)
        self._z = np.zeros(d)

    def _rows(self, batch: ArrayLike) -> np.ndarray:
        """``batch`` as a float64 (N, d) array; a clear error for the wrong shape."""
        x = np.asarray(batch, dtype=np.float64)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != self.mean.size:
            raise ValueError(f"expected a batch of shape (N, {self.mean.size}), got {x.shape}")
        return x

    @staticmethod
    def _check_finite(x: np.ndarray) -> None:
        if not np.isfinite(x).all():
            raise ValueError("batch has NaN or infinite values")

    # -- read-only state
    @property
    def effect(self) -> np.ndarray:
        """Per-feature shift of the mean, in reference standard deviations."""
        return self._effect.copy()

    @property
    def z(self) -> np.ndarray:
        """Per-feature standard-error z-score of the mean."""
        return self._z.copy()

    @property
    def feature_index(self) -> np.ndarray:
        """Per-feature index (the index is their maximum): a feature drifts at 1.0."""
        return self._per_feature.copy()

    @property
    def drifting_features(self) -> list[str]:
        return [f for f, s in zip(self.features, self._per_feature, strict=True) if s >= 1.0]
