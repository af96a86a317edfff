"""FIDI, the Feature-Informed Drift Index: z-scores of recent feature means against the
training reference, judged after every row on windows of several lengths.

Every value is first mapped to a normal score through the training quantiles (see
:mod:`shared.drift.scores`; without quantiles, plain standardisation), so each feature is
N(0, 1) under the reference whatever its shape. After each row FIDI takes the mean ``m``
of the last ``n`` rows of every feature, for every window length ``n`` in ``scales``:

* effect size ``e = |m - mu| / sigma``: the shift, in reference standard deviations;
* significance ``z = e * sqrt(n)``.

A feature drifts when both are large: ``e >= min_effect`` (the shift matters) and
``z >= z_crit``, where ``z_crit`` is the two-sided normal quantile for a false-alarm
rate ``alpha`` per row, split over every feature and window length (Bonferroni). The
index is ``max min(e / min_effect, z / z_crit)`` over features and windows: drift when
it reaches 1. Short windows catch a large shift within tens of rows; long ones catch a
small shift without waiting for a fixed window to fill. Consecutive rows share most of
their windows, so alarms come in runs and one run is one alarm.

A 0/1 **indicator** (a one-hot category or a missing flag of a bundle's schema) is
standardised by its training rate ``p`` instead, with ``p`` taken as at least
``INDICATOR_MIN_RATE`` (a category never seen in training may appear a few times without
alarm), and judged only on windows holding at least ``INDICATOR_MIN_COUNT`` expected rare
values (``n * min(p, 1 - p)``): on shorter ones a rare flag's mean is too skewed for the
normal quantile, and a few flags in 16 rows would read as a drift.

Recovery uses the longest window only: once in drift, FIDI reports recovery after the
longest window's index stays below ``recovery`` for ``recovery_rows`` rows in a row.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(42)
>>> fidi = FIDI(mean=np.zeros(5), std=np.ones(5), features=list("abcde"))
>>> for i in range(60):
...     batch = rng.normal(0.0, 1.0, size=(100, 5))
...     if i >= 30:
...         batch[:, 2] += 1.0   # feature "c" shifts by one standard deviation
...     _ = fidi.update(batch)
...     if fidi.drift_detected:
...         print(f"drift at row {fidi.rows_seen - len(batch) + fidi.detected_at}: {fidi.drifting_features}")
drift at row 3016: ['c']
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike

from shared.drift.base import MeanShiftDetector, block_sums, checked_blocks, keep_from, window_starts
from shared.drift.scores import NormalScores
from shared.errors import ConfigError

SCALES = (16, 32, 64, 128, 256, 512, 1024, 2048)
INDICATOR_MIN_RATE = 0.02  # an indicator's training rate is taken as at least this (and at most 1 - this)
INDICATOR_MIN_COUNT = 25  # expected rare values in a window before an indicator is judged on it


class FIDI(MeanShiftDetector):
    """Multi-scale z-scores of feature means against a reference, with false-alarm control.

    Parameters
    ----------
    mean, std
        Reference per-feature mean and standard deviation (from training data); used to
        standardise when ``quantiles`` is not given.
    quantiles
        Reference quantiles (features, k) for normal scores (robust to skewed features).
    scales
        Window lengths in rows, judged after every row.
    alpha
        False-alarm rate per row, split over every feature and window length.
    min_effect
        Smallest shift of a feature mean, in reference standard deviations, that counts.
    recovery, recovery_rows
        Drift is over when the longest window's index stays below ``recovery`` that long.
    """

    def __init__(
        self,
        mean: ArrayLike,
        std: ArrayLike,
        *,
        quantiles: ArrayLike | None = None,
        features: Sequence[str] | None = None,
        scales: Sequence[int] = SCALES,
        alpha: float = 1e-5,
        min_effect: float = 0.15,
        recovery: float = 0.5,
        recovery_rows: int = 500,
        indicators: Sequence[bool] | None = None,
    ) -> None:
        super().__init__(mean, std, features)
        d = self.mean.size
        self.scores = None if quantiles is None else NormalScores(quantiles)
        if self.scores is not None and self.scores.n_features != d:
            raise ConfigError(f"quantiles for {self.scores.n_features} features, reference has {d}")
        self.scales = tuple(sorted({int(n) for n in scales}))
        if not self.scales or self.scales[0] < 1:
            raise ConfigError(f"scales must be positive window lengths, got {tuple(scales)}")
        if not 0.0 < alpha < 1.0:
            raise ConfigError(f"alpha must lie in (0, 1), got {alpha}")
        if min_effect <= 0 or not 0 < recovery <= 1 or recovery_rows < 1:
            raise ConfigError("need min_effect > 0, 0 < recovery <= 1 and recovery_rows >= 1")
        self.alpha, self.min_effect = alpha, min_effect
        self.recovery, self.recovery_rows = recovery, recovery_rows
        self.z_crit = NormalDist().inv_cdf(1.0 - alpha / (2 * d * len(self.scales)))
        # the reference of the transformed values
        self._mu = np.zeros(d) if self.scores is None else np.full(d, self.scores.mean)
        self._sigma = np.ones(d) if self.scores is None else np.full(d, self.scores.std)
        self.indicators = np.zeros(d, bool) if indicators is None else np.asarray(indicators, bool)
        if self.indicators.shape != (d,):
            raise ConfigError(f"indicators for {self.indicators.size} features, reference has {d}")
        rate = np.clip(self.mean, INDICATOR_MIN_RATE, 1 - INDICATOR_MIN_RATE)
        self._rate_sd = np.sqrt(rate * (1 - rate))
        # the shortest window each feature is judged on (indicators: enough rare values expected)
        self._min_n = np.where(self.indicators, INDICATOR_MIN_COUNT / np.minimum(rate, 1 - rate), 0.0)
        self._mu[self.indicators], self._sigma[self.indicators] = 0.0, 1.0
        self._history = np.zeros((0, d))  # the units (rows or blocks) holding the last max(scales) rows
        self._held = np.zeros(0, np.int64)  # rows in each unit of the history

    def _transform(self, x: np.ndarray) -> np.ndarray:
        out = self.scores.transform(x) if self.scores is not None else (x - self.mean) / self.std
        ind = self.indicators
        if ind.any():
            out[:, ind] = (x[:, ind] - self.mean[ind]) / self._rate_sd[ind]
        return out

    def update(self, batch: ArrayLike) -> FIDI:
        """Add a batch of rows (N, d), judged row by row; returns self."""
        x = self._rows(batch)
        self._new_batch()
        if x.shape[0] == 0:
            return self
        self._check_finite(x)
        return self._judge(self._standardise(x), None)

    def summarise(self, batch: ArrayLike, size: int) -> tuple[np.ndarray, np.ndarray]:
        """The sufficient statistics of a batch of rows (N, d) for :meth:`update_blocks`: the
        rows cut into blocks of ``size``, each block's row count (B,) and the sums of its
        rows' standardised scores (B, d). Sums of several sources' blocks add up exactly, so
        monitors that each read part of a stream can be judged as one."""
        x = self._rows(batch)
        self._check_finite(x)
        return block_sums(self._standardise(x), size)

    def update_blocks(self, counts: ArrayLike, sums: ArrayLike) -> FIDI:
        """Add blocks from :meth:`summarise` (of this instance or another on the same
        reference), judged at the end of each block: a window is the fewest latest blocks
        holding its length in rows, its mean exactly that of its rows. Returns self."""
        c, u = checked_blocks(counts, sums, self.mean.size)
        self._new_batch()
        return self if len(c) == 0 else self._judge(u, c)

    def _standardise(self, x: np.ndarray) -> np.ndarray:
        """Scores in reference standard deviations from the reference mean."""
        out: np.ndarray = (self._transform(x) - self._mu) / self._sigma
        return out

    def _judge(self, units: np.ndarray, counts: np.ndarray | None) -> FIDI:
        """Judge new units (rows, or blocks of ``counts`` rows) of standardised scores at each
        end. A window of ``n`` rows whose mean moved by ``e`` scores ``min(e / min_effect,
        e sqrt(n) / z_crit)``, that is ``|sum| k(n)`` with ``k(n) = min(1 / (n min_effect),
        1 / (sqrt(n) z_crit))``: one pass over (windows, units, features) and a maximum,
        the effect and z of the reported unit alone worked out after."""
        unit = counts is None and bool((self._held == 1).all())  # every unit a row: n rows = n units
        b, d = units.shape
        c = np.ones(b, np.int64) if counts is None else counts
        h = len(self._history)
        data = np.concatenate([self._history, units])
        held = np.concatenate([self._held, c])
        cum = np.concatenate([np.zeros((1, d)), np.cumsum(data, axis=0)])
        before = np.concatenate([[0], np.cumsum(held)])  # rows before each prefix index
        end = np.arange(h + 1, h + b + 1)  # prefix index after each new unit
        seen = self._n_rows + np.cumsum(c)  # rows seen after each new unit
        scales = np.array([n for n in self.scales if seen[-1] >= n], dtype=np.int64)  # any unit full
        index, longest = np.zeros(b), np.zeros(b)
        score = start = n = None
        if len(scales):
            ok = seen[None, :] >= scales[:, None]  # (scales, units): the window is full
            start, m = window_starts(before, end, scales, unit)
            n = m.astype(np.float64)  # rows in each window
            k = np.minimum(1.0 / (n * self.min_effect), 1.0 / (np.sqrt(n) * self.z_crit))
            k[~ok] = 0.0
            score = cum[start]
            np.subtract(cum[end][None], score, out=score)
            np.abs(score, out=score)
            score *= k[:, :, None]
            too_short = scales[:, None] < self._min_n[None, :]  # an indicator's window too short
            if too_short.any():
                score *= ~too_short[:, None, :]
            index = score.max(axis=0).max(axis=1)
            last_full = ok.sum(axis=0) - 1  # per unit: the longest full window
            longest = np.where(last_full >= 0, score[np.maximum(last_full, 0), np.arange(b)].max(axis=1), 0.0)
        keep = keep_from(held, self.scales[-1])
        self._history, self._held = data[keep:], held[keep:]
        at = self._step(index, longest, self.recovery, self.recovery_rows, counts)
        if score is None or start is None or n is None:
            self._per_feature, self._effect, self._z = np.zeros(d), np.zeros(d), np.zeros(d)
            return self
        s_at = score[:, at]  # (scales, features) at the reported unit
        best = s_at.argmax(axis=0)  # per feature: the first window with the top score
        cols = np.arange(d)
        self._per_feature = s_at[best, cols]
        hit = self._per_feature > 0
        n_best = n[best, at]
        e = np.abs(cum[end[at]] - cum[start[best, at], cols]) / n_best
        self._effect = np.where(hit, e, 0.0)
        self._z = np.where(hit, e * np.sqrt(n_best), 0.0)
        return self

    # -- read-only state (the rest in MeanShiftDetector and DriftState)
    @property
    def top_feature(self) -> str | None:
        if self._n_rows < self.scales[0]:
            return None
        return self.features[int(np.argmax(self._per_feature))]

    def onset_rows(self) -> int:
        """Estimated rows since the drift began: the suffix of the recent rows whose mean shift
        is most significant on the drifting features (the change-point estimate for a mean
        shift), counted from the end of the last batch."""
        feats = [self.features.index(f) for f in self.drifting_features]
        if not feats:
            return 0
        units = self._history[::-1, feats]  # newest first
        n = np.cumsum(self._held[::-1]).astype(np.float64)
        z = np.abs(np.cumsum(units, axis=0)) / np.sqrt(n)[:, None]
        z[n < self.scales[0]] = 0.0  # suffixes shorter than the shortest window are noise
        return int(n[int(np.argmax(z.max(axis=1)))])
