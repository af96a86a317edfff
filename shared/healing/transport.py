"""Stale labels carried to the present: labelled rows aligned, feature by feature, with the
rows the stream shows now.

Labels hours late can describe a distribution the stream has since left: a recalibration
still ramping (a currency, a sensor's scale) moves every feature while the labels are for
rows from before. Training on them heals for the past. Where a feature's median among the
labelled rows sits more than ``limit`` training standard deviations from its median among
the recent unlabelled rows, the labelled rows' values of that feature are mapped robustly
(median and interquartile range) onto the recent rows'. It assumes what a recalibration
is: a monotone change of each feature, the same fraud share and the same ``p(fraud | the
transaction)`` then and now; features that did not move are left as they are, so a drift
the labels already describe (they come from the same regime as now) is untouched.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> then, now = rng.normal(0, 1, (400, 2)), rng.normal(0, 1, (400, 2)) * [1, 2] + [0, 3]
>>> X = np.vstack([then, now]).astype(np.float32)
>>> y = np.concatenate([np.zeros(400), np.full(400, np.nan)]).astype(np.float32)
>>> moved, batch = carry_labels(HealBatch(X, y), reference_std=np.ones(2), limit=0.3)
>>> untouched = np.array_equal(batch.X[:400, 0], X[:400, 0])
>>> moved, round(float(np.median(batch.X[:400, 1])), 1), untouched
([1], 3.0, True)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shared.healing.cycle import HealBatch

MIN_ROWS = 100  # labelled and unlabelled rows each needed to compare them


def carry_labels(batch: HealBatch, reference_std: np.ndarray, limit: float) -> tuple[list[int], HealBatch]:
    """(the features moved, the batch with its labelled rows carried to its unlabelled ones)."""
    labelled = ~np.isnan(batch.y)
    if labelled.sum() < MIN_ROWS or (~labelled).sum() < MIN_ROWS:
        return [], batch
    then, now = batch.X[labelled], batch.X[~labelled]
    m_then, m_now = np.median(then, axis=0), np.median(now, axis=0)
    moved = np.flatnonzero(np.abs(m_then - m_now) / reference_std > limit)
    if not len(moved):
        return [], batch
    iqr_then = np.subtract(*np.percentile(then[:, moved], [75, 25], axis=0))
    iqr_now = np.subtract(*np.percentile(now[:, moved], [75, 25], axis=0))
    scale = iqr_now / np.maximum(iqr_then, 1e-6)
    X = batch.X.copy()
    rows = np.flatnonzero(labelled)
    X[np.ix_(rows, moved)] = (then[:, moved] - m_then[moved]) * scale + m_now[moved]
    return moved.tolist(), HealBatch(X.astype(np.float32), batch.y, batch.w)


def stale_reason(
    labelled: np.ndarray, now: np.ndarray, reference_std: np.ndarray, features: Sequence[str], limit: float
) -> str | None:
    """Why to wait for fresher labels: the labelled rows' feature means sit more than
    ``limit`` training standard deviations from the newest rows' (None: they do not, or
    either side has fewer than 100 rows)."""
    if min(len(labelled), len(now)) < 100:
        return None
    shift = np.abs(labelled.mean(axis=0) - now.mean(axis=0)) / reference_std
    k = int(np.argmax(shift))
    if shift[k] <= limit:
        return None
    return (
        f"the newest labels describe an older distribution ({features[k]} {shift[k]:.2f} sd from the "
        f"newest rows, limit {limit}): waiting for fresher labels"
    )
