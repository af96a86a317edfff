"""What the training rows say, ready to compare the stream with: each feature's marginal at
any fraud rate, and how the model's scores behave on rows it did not train on.

A fraud-rate change moves every informative feature's marginal: at fraud rate ``pi`` it is
``(1 - pi) F_normal + pi F_fraud``. The per-class CDFs are kept on a grid of the training
quantiles, so the marginal, its quantiles and the variance of its CDF at any ``pi`` are a few array
operations.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from shared.bundle import Bundle
from shared.errors import ConfigError
from shared.labelfree.prior import em_miss, fit_calibration


@dataclass(frozen=True)
class ScoreReference:
    """The base model's scores on the validation rows (never trained on)."""

    slope: float  # calibration: p = sigmoid(slope * logit + bias)
    bias: float
    tpr: float  # at the bundle's threshold
    fpr: float
    flag_rate: float
    rows: int
    rule_flagged: float | None  # of validation rows a rule fires on, the share the model flags
    em_error: float = 0.0  # log-odds by which EM misses a known fraud rate on validation rows
    # it was not calibrated on: EM needs scores calibrated row by row, and a two-number
    # calibration of an overconfident model (logits to +-40) is right on average only, on the
    # rows it was fitted to; where this is large EM is not asked


class LabelFreeReference:
    def __init__(self, bundle: Bundle, grid: int = 1024) -> None:
        ref = bundle.reference_rows
        if ref is None:
            raise ConfigError(
                f"bundle {bundle.id} has no reference rows (made before label-free healing existed): "
                "retrain it with `selfheal train` to heal before labels arrive"
            )
        X, y = np.asarray(ref.X, np.float64), np.asarray(ref.y) > 0.5
        if y.all() or not y.any():
            raise ConfigError("the bundle's reference rows hold one class only")
        self.features = bundle.features
        # what a unit change may recalibrate: numbers, never a schema's 0/1 inputs (a category's
        # or a missing flag's share that moves is a change of shape: unexplained)
        self.numeric = np.ones(len(bundle.features), bool)
        if bundle.schema is not None:
            self.numeric = ~np.asarray(bundle.schema.indicators, bool)
        self.rate_class = np.stack([X[~y].mean(axis=0), X[y].mean(axis=0)])  # (2, d): a 0/1 input's rates
        self.prior0 = float(y.mean())
        self.std = X.std(axis=0) + 1e-12
        self.n = (int((~y).sum()), int(y.sum()))
        levels = np.linspace(0.0, 1.0, grid)
        self.grid = np.quantile(X, levels, axis=0).T  # (d, G)
        self.grid += np.arange(grid) * 1e-9 * (1 + np.abs(self.grid).max(axis=1, keepdims=True))
        self.cdf_class = np.stack([_ecdf(X[rows], self.grid) for rows in (~y, y)])  # (2, d, G): normal, fraud
        self.rules = bundle.rules
        self.adapter = bundle.adapter_state
        self.model = bundle.new_model()  # the bundle's own adapter: what the scores below describe
        self.threshold_logit = float(np.log(bundle.threshold / (1 - bundle.threshold)))
        self.costs = bundle.costs
        X_val, y_val = ref.X[ref.validation], ref.y[ref.validation]
        # the validation rows' logits and classes: how the scores behave, and where a moved
        # decision would operate
        self.validation = (self.logits(X_val).astype(np.float64), np.asarray(y_val) > 0.5)
        self.scores = _score_reference(self, X_val)

    def rates_at(self, offset: float) -> tuple[float, float]:
        """(TPR, FPR) on the validation rows of the bundle's decision with ``offset`` added
        to its logit (a label-free candidate's operating point)."""
        z, pos = self.validation
        flag = z + offset >= self.threshold_logit
        return float(flag[pos].mean()), float(flag[~pos].mean())

    def prior_offset(self, rate: float) -> float:
        """The logit offset that moves the bundle's decision where it costs least at fraud rate
        ``rate``: the cost-optimal threshold on the validation rows reweighted to ``rate``
        (each class's scores as they are, only their shares moved), relative to the optimum
        at the training rate. It reads the scores' own class distributions, not their
        calibration: a two-number calibration of an overconfident model is right on average
        and wrong in the tail where the decision sits (an offset of ``log-odds change /
        slope`` flagged a quarter of the rows on a 1% -> 3% shift, at more cost than doing
        nothing)."""
        return self._optimum(self.prior0) - self._optimum(rate)

    def _optimum(self, rate: float) -> float:
        """The threshold on the logit minimising ``rate * FNR * fn + (1 - rate) * FPR * fp``
        on the validation rows, each class's scores smoothed by a Gaussian kernel (Silverman's
        bandwidth): a few dozen frauds make a staircase whose lowest step jumps about as
        the rate moves a little."""
        cuts, fnr, fpr = self._error_curves
        cost = rate * fnr * self.costs.fn + (1 - rate) * fpr * self.costs.fp
        return float(cuts[int(np.argmin(cost))])

    @cached_property
    def _error_curves(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(thresholds, FNR, FPR) on the validation rows, smoothed: they do not depend on the
        fraud rate, so every diagnosis reads the ones computed first."""
        z, pos = self.validation
        cuts = np.linspace(z.min() - 1.0, z.max() + 1.0, 2001)
        return cuts, _smoothed_cdf(z[pos], cuts), 1 - _smoothed_cdf(z[~pos], cuts)

    def logits(self, X: np.ndarray) -> np.ndarray:
        """The bundle's own model's logits for raw rows (no calibration)."""
        with torch.no_grad():
            out: np.ndarray = self.model(torch.as_tensor(np.asarray(X, np.float32))).numpy()
        return out

    def calibrated(self, logits: np.ndarray, log_odds: float = 0.0) -> np.ndarray:
        """Probabilities from logits of the bundle's model (or of a candidate built on it),
        with the fraud odds moved by ``log_odds`` (a fraud rate other than the training's)."""
        z = self.scores.slope * np.asarray(logits, np.float64) + self.scores.bias + log_odds
        p: np.ndarray = 1 / (1 + np.exp(-z))
        return p

    def cdf(self, pi: float) -> np.ndarray:
        """(d, G): each feature's training CDF at fraud rate ``pi``, on ``self.grid``."""
        c: np.ndarray = (1 - pi) * self.cdf_class[0] + pi * self.cdf_class[1]
        return c

    def class_cdfs_at(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each class's training CDF at points ``x`` (d, k): what :meth:`cdf_at` mixes (the
        same for every fraud rate, so a search over rates takes them once)."""
        cn, cf = (
            np.stack([np.interp(x[j], self.grid[j], cc[j]) for j in range(len(cc))]) for cc in self.cdf_class
        )
        return cn, cf

    def cdf_at(
        self, pi: float, x: np.ndarray, classes: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The training CDF at fraud rate ``pi`` at points ``x`` (d, k), and its variance as
        an estimate (each class's binomial variance, weighted by its share); ``classes``:
        :meth:`class_cdfs_at` of ``x``, if taken already."""
        cn, cf = classes if classes is not None else self.class_cdfs_at(x)
        n_normal, n_fraud = self.n
        var = (1 - pi) ** 2 * cn * (1 - cn) / n_normal + pi**2 * cf * (1 - cf) / n_fraud
        return (1 - pi) * cn + pi * cf, var

    def rate_z(self, X: np.ndarray, pi: float) -> np.ndarray:
        """(d,): how far each 0/1 input's share in ``X`` sits from its training share at fraud
        rate ``pi``, in standard errors (0 for numbers: quantiles judge those; ties make
        quantiles meaningless for a 0/1 input)."""
        n = len(X)
        r0, r1 = self.rate_class
        p = (1 - pi) * r0 + pi * r1
        n_normal, n_fraud = self.n
        var = p * (1 - p) / n + (1 - pi) ** 2 * r0 * (1 - r0) / n_normal + pi**2 * r1 * (1 - r1) / n_fraud
        z = np.abs(X.mean(axis=0) - p) / np.sqrt(np.maximum(var, 0.25 / max(n, 1) ** 2))
        z[self.numeric] = 0.0
        return z  # type: ignore[no-any-return]

    def quantiles(self, pi: float, q: np.ndarray) -> np.ndarray:
        """(d, len(q)): the marginal quantiles at fraud rate ``pi``."""
        c = self.cdf(pi)
        tiny = np.arange(c.shape[1]) * 1e-12  # strictly increasing, for np.interp
        return np.stack([np.interp(q, c[j] + tiny, self.grid[j]) for j in range(len(c))])


def _smoothed_cdf(v: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The share of ``v`` below each of ``at``, with a Gaussian kernel (Silverman's bandwidth)."""
    sd = min(float(v.std()), float(np.subtract(*np.percentile(v, [75, 25]))) / 1.349) or float(v.std()) or 1.0
    h = 0.9 * sd * len(v) ** -0.2
    vt = torch.as_tensor(v)
    # in blocks of points: points x rows at once would hold 2,001 x 8,000 doubles per class
    blocks = [
        torch.special.ndtr((torch.as_tensor(a)[:, None] - vt[None, :]) / h).mean(dim=1)
        for a in np.array_split(at, max(1, len(at) // 256))
    ]
    out: np.ndarray = torch.cat(blocks).numpy()
    return out


def _ecdf(X: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """(d, G): the empirical CDF of each column of ``X`` at its grid points."""
    s = np.sort(X, axis=0)
    return np.stack([np.searchsorted(s[:, j], grid[j], side="right") / len(s) for j in range(len(grid))])


def _score_reference(ref: LabelFreeReference, X: np.ndarray) -> ScoreReference:
    """How the bundle's scores behave on the validation rows ``X`` (``ref.validation``)."""
    z, pos = ref.validation
    if len(pos) < 50 or pos.all() or not pos.any():
        raise ConfigError("the bundle's reference holds too few validation rows of both classes to calibrate")
    slope, bias = fit_calibration(z, pos)
    flag = z >= ref.threshold_logit
    fired = ref.rules.fires(X).any(axis=1)
    tpr, fpr = ref.rates_at(0.0)
    return ScoreReference(
        slope,
        bias,
        tpr,
        fpr,
        float(flag.mean()),
        len(pos),
        float(flag[fired].mean()) if fired.sum() >= 20 else None,
        em_miss(z, pos),
    )
