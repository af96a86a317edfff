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

    def _step(
        self,
        index: np.ndarray,
        longest: np.ndarray,
        recovery: float,
        recovery_rows: int,
        counts: np.ndarray | None = None,
    ) -> int:
        """Advance by one batch of per-unit indices; returns the unit whose state to report.
        A unit is a row, or with ``counts`` a block of that many rows (judged at its end).
        Outside drift, the first unit whose ``index`` reaches 1 enters it; in drift, it ends
        after ``recovery_rows`` rows in a row whose ``longest`` (the longest full window's
        index) stays below ``recovery``."""
        b = len(index)
        rows = np.arange(1, b + 1) if counts is None else np.cumsum(counts)  # rows after each unit
        at = b - 1
        if not self._in_drift:
            hits = np.flatnonzero(index >= 1.0)
            if hits.size:
                at = int(hits[0])
                self._in_drift = self._drift_detected = True
                self._detected_at, self._calm = int(rows[at]) - 1, 0
        else:
            # the calm run after each unit: rows since the last one at or above ``recovery``
            last_break = np.maximum.accumulate(np.where(longest >= recovery, np.arange(b), -1))
            run = np.where(last_break >= 0, rows - rows[np.maximum(last_break, 0)], self._calm + rows)
            done = np.flatnonzero(run >= recovery_rows)
            if done.size:
                at = int(done[0])
                self._in_drift, self._recovered, self._calm = False, True, 0
            else:
                self._calm = int(run[-1])
        self._n_rows += int(rows[-1])
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
        """Row of the last batch (0-based) at which drift was detected, or None (fed blocks:
        the last row of the block that entered it)."""
        return self._detected_at

    @property
    def rows_seen(self) -> int:
        return self._n_rows


def window_starts(
    rows_before: np.ndarray, end: np.ndarray, scales: np.ndarray, unit: bool
) -> tuple[np.ndarray, np.ndarray]:
    """For each window length and each unit ending at prefix index ``end``: the prefix index
    the window starts at and the rows it holds, (scales, units) each. ``rows_before`` is the
    rows before each prefix index. Rows (``unit``): exactly ``n`` rows back. Blocks: the
    fewest latest blocks holding at least ``n`` rows, so a window's statistic is exactly
    that of the rows it covers (where too few rows were seen, the window starts at 0 and
    is not full)."""
    if unit:
        start = np.maximum(end[None, :] - scales[:, None], 0)
        return start, np.broadcast_to(scales[:, None], start.shape)
    target = rows_before[end][None, :] - scales[:, None]
    start = np.maximum(np.searchsorted(rows_before, target, side="right") - 1, 0)
    return start, rows_before[end][None, :] - rows_before[start]


def block_sums(values: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows (N, k) cut into consecutive blocks of ``size`` (the last may be shorter): each
    block's row count (B,) and column sums (B, k)."""
    if size < 1:
        raise ConfigError(f"block size must be >= 1, got {size}")
    starts = np.arange(0, len(values), size)
    if len(starts) == 0:
        return np.zeros(0, np.int64), np.zeros((0, values.shape[1]))
    counts = np.diff(np.append(starts, len(values)))
    return counts, np.add.reduceat(values, starts, axis=0)


def checked_blocks(counts: ArrayLike, sums: ArrayLike, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Blocks as (row counts (B,), sums (B, width)); a clear error for counts below 1 or sums
    that are not finite."""
    c = np.asarray(counts, dtype=np.int64).ravel()
    u = np.asarray(sums, dtype=np.float64).reshape(len(c), width)
    if (c < 1).any() or not np.isfinite(u).all():
        raise ValueError("blocks need row counts >= 1 and finite sums")
    return c, u


def keep_from(held: np.ndarray, rows: int) -> int:
    """The first of the fewest latest units (of ``held`` rows each) holding at least ``rows``
    rows (0: all of them): how much history a detector keeps."""
    after = np.cumsum(held[::-1])
    enough = np.flatnonzero(after >= rows)
    return len(held) - 1 - int(enough[0]) if enough.size else 0


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
