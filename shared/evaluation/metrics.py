"""Confusion counts, the usual rates, PR-AUC and expected cost.

Fraud is the positive class (label 1). Expected cost is per transaction:
``(fp_cost * FP + fn_cost * FN) / N``; with the default costs a missed fraud costs ten
times a false alarm.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from shared.errors import ConfigError


@dataclass(frozen=True)
class CostMatrix:
    fp: float = 1.0  # cost of flagging a legitimate transaction
    fn: float = 10.0  # cost of missing a fraud

    def __post_init__(self) -> None:
        if not (self.fp > 0 and self.fn > 0):
            raise ConfigError(f"costs must be positive, got fp={self.fp}, fn={self.fn}")

    @property
    def bayes_threshold(self) -> float:
        """Probability above which flagging costs less than passing, for calibrated scores."""
        return self.fp / (self.fp + self.fn)

    def per_row(self, y: ArrayLike, flagged: ArrayLike) -> np.ndarray:
        """Each row's cost: ``fp`` for a flagged legitimate row, ``fn`` for a missed fraud."""
        yy = np.asarray(y, dtype=np.float64)
        return np.where(np.asarray(flagged, dtype=bool), (1 - yy) * self.fp, yy * self.fn)

    def to_dict(self) -> dict[str, float]:
        return {"fp": self.fp, "fn": self.fn}


def paired_z(d: ArrayLike) -> float:
    """Mean of paired per-row differences ``d`` over its standard error (0 when there are
    fewer than two rows or no difference at all).

    >>> round(paired_z([1.0, 2.0, 3.0]), 3)
    3.464
    """
    x = np.asarray(d, dtype=np.float64)
    if len(x) < 2 or not x.any():
        return 0.0
    return float(x.mean() / (x.std(ddof=1) / np.sqrt(len(x)) + 1e-12))


def cohen_kappa(a: ArrayLike, b: ArrayLike) -> float:
    """Agreement of two binary verdicts beyond what their rates give by chance: 1 same,
    0 no better than chance, below 0 anti-correlated (0 when either is constant).

    >>> cohen_kappa([1, 0, 0, 0], [1, 0, 0, 0]), cohen_kappa([1, 0, 0, 0], [0, 1, 1, 1])
    (1.0, -0.6)
    """
    x, y = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if len(x) == 0:
        return 0.0
    po = float((x == y).mean())
    px, py = float(x.mean()), float(y.mean())
    pe = px * py + (1 - px) * (1 - py)
    return 0.0 if pe >= 1 else (po - pe) / (1 - pe)


@dataclass(frozen=True)
class Metrics:
    accuracy: float
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int
    tn: int
    cost: float  # expected cost per transaction
    pr_auc: float | None = None  # average precision of the scores, when scores were given

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["pr_auc"] is None:
            del d["pr_auc"]
        return d


def metrics_from_predictions(
    y: ArrayLike, pred: ArrayLike, costs: CostMatrix, scores: ArrayLike | None = None
) -> Metrics:
    """Metrics for hard predictions (and PR-AUC when ``scores`` are given)."""
    yt = np.asarray(y).astype(bool).ravel()
    yp = np.asarray(pred).astype(bool).ravel()
    if yt.shape != yp.shape:
        raise ValueError(f"labels {yt.shape} and predictions {yp.shape} differ in shape")
    tp = int(np.sum(yt & yp))
    fp = int(np.sum(~yt & yp))
    fn = int(np.sum(yt & ~yp))
    tn = int(np.sum(~yt & ~yp))
    n = max(tp + fp + fn + tn, 1)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Metrics(
        accuracy=(tp + tn) / n,
        precision=precision,
        recall=recall,
        f1=f1,
        tp=tp,
        fp=fp,
        fn=fn,
        tn=tn,
        cost=(costs.fp * fp + costs.fn * fn) / n,
        pr_auc=None if scores is None else average_precision(yt, scores),
    )


def evaluate_scores(y: ArrayLike, scores: ArrayLike, threshold: float, costs: CostMatrix) -> Metrics:
    """Metrics of ``scores >= threshold`` as the fraud decision, with PR-AUC of the scores."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    return metrics_from_predictions(y, s >= threshold, costs, scores=s)


def average_precision(y: ArrayLike, scores: ArrayLike) -> float:
    """Area under the precision-recall curve as average precision (step-wise, ties grouped).

    >>> round(average_precision([0, 1, 1, 0], [0.1, 0.9, 0.4, 0.5]), 4)
    0.8333
    """
    yt = np.asarray(y).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    n_pos = int(yt.sum())
    if n_pos == 0:
        return 0.0
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], yt[order]
    tps = np.cumsum(y_sorted)
    # keep the last index of each run of tied scores
    last = np.r_[np.nonzero(np.diff(s_sorted))[0], len(s_sorted) - 1]
    tp_at, n_at = tps[last], last + 1
    precision = tp_at / n_at
    recall = tp_at / n_pos
    d_recall = np.diff(np.r_[0.0, recall])
    return float(np.sum(d_recall * precision))


def cost_optimal_threshold(y: ArrayLike, scores: ArrayLike, costs: CostMatrix) -> float:
    """The threshold t minimising expected cost of ``scores >= t`` on (y, scores).

    Ties go to the highest such threshold (fewer alerts for the same cost); the value
    returned lies half-way between neighbouring distinct scores so it generalises.

    >>> cost_optimal_threshold([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], CostMatrix())
    0.5
    """
    yt = np.asarray(y).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if len(s) == 0:
        raise ValueError("cannot choose a threshold on no samples")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], yt[order]
    tp = np.cumsum(y_sorted)
    fp = np.cumsum(~y_sorted)
    last = np.r_[np.nonzero(np.diff(s_sorted))[0], len(s_sorted) - 1]
    n_pos = int(yt.sum())
    # candidate k: flag everything scoring >= s_sorted[last[k]]; plus "flag nothing"
    cost_flag = costs.fp * fp[last] + costs.fn * (n_pos - tp[last])
    cost_none = costs.fn * n_pos
    k = int(np.argmin(cost_flag))
    if cost_none <= cost_flag[k]:
        return float(np.nextafter(s_sorted[0], np.inf))  # flag nothing
    lo = s_sorted[last[k]]
    nxt = s_sorted[last[k] + 1] if last[k] + 1 < len(s_sorted) else None
    return float(lo if nxt is None else (lo + nxt) / 2)
