"""CategoryShift: a chi-square test of each category field's frequencies against training,
judged after every row on windows of several lengths (FIDI's sibling for categories).

A category field of a bundle's schema is a block of 0/1 inputs, exactly one set per row:
one per frequent category, ``<other>`` and ``:missing``. Over the last ``n`` rows the
detector counts each cell ``O`` and compares it with ``E = n q``, ``q`` the training share
(taken as at least ``min_rate``), by Pearson's statistic ``X2 = sum (O - E)^2 / E``. A
cell rarer than ``min_rate`` in training counts only when it is seen *more* often than
``E`` (a category never seen in training may appear a few times without alarm; whether it
became rarer cannot be told on these windows anyway).

A field drifts when both are large: the effect ``w = sqrt(X2 / n)`` (Cohen's w: 0.1 is
small, 0.3 medium) reaches ``min_effect``, and ``X2`` reaches the chi-square quantile of
``k - 1`` degrees of freedom for a false-alarm rate ``alpha`` per row, split over every
field and window length (Bonferroni), as FIDI does. A window is judged only where every
cell expects at least ``min_expected`` rows, as the chi-square approximation needs. The
index is ``max min(w / min_effect, sqrt(X2 / X2_crit))``; recovery as FIDI's.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(42)
>>> shares = (0.5, 0.45, 0.0, 0.05)   # in training: no <other> value, 5% missing
>>> group = CategoryGroup("country", (0, 1, 2, 3), ("FR", "DE", "<other>", "<missing>"), shares)
>>> det = CategoryShift([group])
>>> for i in range(60):
...     p = shares if i < 30 else [0.45, 0.42, 0.08, 0.05]   # a new country, 8%
...     batch = np.eye(4)[rng.choice(4, size=100, p=p)]
...     _ = det.update(batch)
...     if det.drift_detected:
...         print(f"drift at row {det.rows_seen - len(batch) + det.detected_at}: {det.moved}")
drift at row 3202: {'country': ('<other>', 0.07, 0.0)}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from shared.drift.base import DriftState, block_sums, checked_blocks, keep_from, window_starts
from shared.drift.fidi import INDICATOR_MIN_RATE, SCALES
from shared.errors import ConfigError


@dataclass(frozen=True)
class CategoryGroup:
    name: str  # the field
    columns: tuple[int, ...]  # its inputs in a row: exactly one is 1
    labels: tuple[str, ...]  # the category of each input (``<other>`` and ``<missing>`` included)
    reference: tuple[float, ...]  # the training share of each


def chi2_sf(x: float, df: int) -> float:
    """P(X2 >= x) for ``df`` degrees of freedom (exact, by the recursion on df in steps of 2)."""
    if x <= 0:
        return 1.0
    if df % 2:
        q, term, k = math.erfc(math.sqrt(x / 2)), math.sqrt(x / 2) * math.exp(-x / 2) / math.gamma(1.5), 1
    else:
        q, term, k = math.exp(-x / 2), x / 2 * math.exp(-x / 2), 2
    while k < df:  # Q(x; k + 2) = Q(x; k) + (x/2)^(k/2) e^(-x/2) / Gamma(k/2 + 1)
        q += term
        term *= x / (k + 2)
        k += 2
    return min(q, 1.0)


def chi2_isf(p: float, df: int) -> float:
    """The ``x`` with ``chi2_sf(x, df) == p`` (bisection)."""
    lo, hi = 0.0, 1.0
    while chi2_sf(hi, df) > p:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if chi2_sf(mid, df) > p else (lo, mid)
    return hi


class CategoryShift(DriftState):
    """Multi-scale chi-square tests of category frequencies against training shares.

    Parameters
    ----------
    groups
        The category fields: their inputs in a row and training shares.
    scales
        Window lengths in rows, judged after every row (where long enough, see above).
    alpha
        False-alarm rate per row, split over every field and window length.
    min_effect
        Smallest Cohen's w that counts.
    min_rate, min_expected
        Shares below ``min_rate`` are taken as ``min_rate``; each cell must expect
        ``min_expected`` rows in a window for it to be judged.
    recovery, recovery_rows
        Drift is over when the longest window's index stays below ``recovery`` that long.
    """

    def __init__(
        self,
        groups: Sequence[CategoryGroup],
        *,
        scales: Sequence[int] = SCALES,
        alpha: float = 1e-5,
        min_effect: float = 0.1,
        min_rate: float = INDICATOR_MIN_RATE,
        min_expected: float = 5.0,
        recovery: float = 0.5,
        recovery_rows: int = 500,
    ) -> None:
        super().__init__()
        if not groups:
            raise ConfigError("CategoryShift needs at least one category field")
        if any(len(g.columns) < 2 or not len(g.columns) == len(g.labels) == len(g.reference) for g in groups):
            raise ConfigError("each category field needs >= 2 inputs, one label and one share each")
        if not 0.0 < alpha < 1.0 or min_effect <= 0 or not 0 < recovery <= 1 or recovery_rows < 1:
            raise ConfigError("need 0 < alpha < 1, min_effect > 0, 0 < recovery <= 1, recovery_rows >= 1")
        self.groups = list(groups)
        self.scales = tuple(sorted({int(n) for n in scales}))
        self.alpha, self.min_effect = alpha, min_effect
        self.recovery, self.recovery_rows = recovery, recovery_rows
        self._cols = np.array([c for g in groups for c in g.columns])
        p = np.array([r for g in groups for r in g.reference], dtype=np.float64)
        self._q, self._rare = np.maximum(p, min_rate), p < min_rate
        self._of = np.repeat(np.arange(len(groups)), [len(g.columns) for g in groups])  # cell -> field
        per = alpha / (len(groups) * len(self.scales))
        self._crit = np.array([chi2_isf(per, len(g.columns) - 1) for g in groups])
        # the shortest window a field is judged on: every cell expects min_expected rows
        self._min_n = np.array([min_expected / self._q[self._of == i].min() for i in range(len(groups))])
        self._history = np.zeros((0, len(self._cols)))  # the units holding the last max(scales) rows
        self._held = np.zeros(0, np.int64)  # rows in each unit of the history
        self._per_field = np.zeros(len(groups))
        self._window = np.zeros(len(groups))  # per field: its most telling window, to the batch's end
        self._effect = np.zeros(len(groups))
        self._r = self._share = np.zeros(len(self._cols))  # per cell at the reported row

    def update(self, batch: ArrayLike) -> CategoryShift:
        """Add a batch of encoded rows (N, d), judged row by row; returns self."""
        self._new_batch()
        x = self._cells(batch)
        return self if len(x) == 0 else self._judge(x, None)

    def summarise(self, batch: ArrayLike, size: int) -> tuple[np.ndarray, np.ndarray]:
        """The sufficient statistics of a batch for :meth:`update_blocks`: each block of
        ``size`` rows' row count (B,) and cell counts (B, cells); they add up exactly."""
        return block_sums(self._cells(batch), size)

    def update_blocks(self, counts: ArrayLike, cells: ArrayLike) -> CategoryShift:
        """Add blocks from :meth:`summarise`, judged at the end of each block on the fewest
        latest blocks holding each window's rows (see FIDI's); returns self."""
        c, u = checked_blocks(counts, cells, len(self._cols))
        self._new_batch()
        return self if len(c) == 0 else self._judge(u, c)

    def _cells(self, batch: ArrayLike) -> np.ndarray:
        x = np.asarray(batch, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] <= self._cols.max():
            raise ValueError(f"expected rows with at least {self._cols.max() + 1} inputs, got {x.shape}")
        return x[:, self._cols]

    def _judge(self, units: np.ndarray, counts: np.ndarray | None) -> CategoryShift:
        """Judge new units (rows, or blocks of ``counts`` rows) of cell counts at each end."""
        unit = counts is None and bool((self._held == 1).all())  # every unit a row: n rows = n units
        b = len(units)
        c = np.ones(b, np.int64) if counts is None else counts
        h = len(self._history)
        rows = np.concatenate([self._history, units])
        held = np.concatenate([self._held, c])
        cum = np.concatenate([np.zeros((1, rows.shape[1])), np.cumsum(rows, axis=0)])
        before = np.concatenate([[0], np.cumsum(held)])
        end, seen = np.arange(h + 1, h + b + 1), self._n_rows + np.cumsum(c)
        g = len(self.groups)
        best, best_w = np.zeros((b, g)), np.zeros((b, g))
        best_r, best_n = np.zeros((b, len(self._cols))), np.ones((b, g))
        best_start = np.repeat((end - 1)[:, None], g, axis=1)  # with best_n: one unit back
        longest = np.zeros(b)
        starts, held_rows = window_starts(before, end, np.array(self.scales), unit)
        for i, n in enumerate(self.scales):
            ok = seen >= n
            if not ok.any():
                break
            m = held_rows[i][:, None].astype(np.float64)  # rows in each unit's window
            o = cum[end] - cum[starts[i]]
            r = (o - m * self._q) / np.sqrt(m * self._q)
            r = np.where(self._rare, np.maximum(r, 0.0), r)
            x2 = np.zeros((b, g))
            np.add.at(x2.T, self._of, (r * r).T)
            w = np.sqrt(x2 / m)
            score = np.minimum(w / self.min_effect, np.sqrt(x2 / self._crit))
            score[~ok] = 0.0
            score[:, n < self._min_n] = 0.0
            better = score > best
            best, best_w = np.where(better, score, best), np.where(better, w, best_w)
            best_n = np.where(better, m, best_n)
            best_start = np.where(better, starts[i][:, None], best_start)
            best_r = np.where(better[:, self._of], r, best_r)
            longest = np.where(ok, score.max(axis=1), longest)
        index = best.max(axis=1)
        keep = keep_from(held, self.scales[-1])
        self._history, self._held = rows[keep:], held[keep:]
        at = self._step(index, longest, self.recovery, self.recovery_rows, counts)
        self._per_field, self._effect = best[at], best_w[at]
        after = int(before[end[-1]] - before[end[at]])  # rows of the batch after the reported unit
        self._window = best_n[at] + after  # counted from the end of the batch
        n = best_n[at][self._of]  # per cell: its field's most telling window
        first = best_start[at][self._of]
        share = (cum[end[at]] - cum[first, np.arange(len(n))]) / n
        self._r, self._share = best_r[at], share  # per cell, for ``moved``
        return self

    # -- read-only state (the rest in DriftState)
    @property
    def fields(self) -> list[str]:
        return [g.name for g in self.groups]

    @property
    def effect(self) -> np.ndarray:
        """Per field: Cohen's w on its most telling window."""
        return self._effect.copy()

    @property
    def drifting_fields(self) -> list[str]:
        return [g.name for g, s in zip(self.groups, self._per_field, strict=True) if s >= 1.0]

    def onset_rows(self) -> int:
        """Rows since the drift began, counted from the end of the last batch: the most
        telling window of the drifting fields (the shortest of them; the window a shift
        fills best scores highest) and the batch's rows after it."""
        windows = self._window[self._per_field >= 1.0]
        return int(windows.min()) if windows.size else 0

    @property
    def moved(self) -> dict[str, tuple[str, float, float]]:
        """Per drifting field, the category that moved most on its most telling window (the
        largest standardised residual): (category, share now, training share)."""
        out = {}
        for i, g in enumerate(self.groups):
            if self._per_field[i] >= 1.0:
                cells = np.flatnonzero(self._of == i)
                j = int(cells[np.argmax(np.abs(self._r[cells]))])
                k = j - int(cells[0])
                out[g.name] = (g.labels[k], round(float(self._share[j]), 3), round(g.reference[k], 3))
        return out
