"""The fraud rate of unlabeled rows, from the model's calibrated scores.

``em_prior``: Saerens, Latinne & Decaestecker (Neural Computation, 2002): reweight each
posterior by the ratio of the new prior to the training one, take their mean as the new
prior, repeat. Exact when only the prior moved and the scores are calibrated.
``bbse_prior``: Lipton, Wang & Smola (ICML 2018), binary case: the flag rate is
``FPR + prior * (TPR - FPR)`` when only the prior moved, so one division inverts it.
``fit_calibration``: Platt scaling (a slope and a bias on the logit), which for two
classes is bias-corrected temperature scaling (Alexandari et al., ICML 2020).
``em_miss``: how far EM lands from known fraud rates on labelled rows it was not
calibrated on (EM is only as good as the scores' calibration row by row).

>>> rng = np.random.default_rng(0)
>>> y = (rng.random(20_000) < 0.4).astype(float)      # 40% fraud now; the model learnt 15%
>>> x = rng.normal(np.where(y == 1, 1.0, -1.0), 1.0)  # the classes: N(+1, 1) and N(-1, 1)
>>> p = 1 / (1 + np.exp(-(2 * x + np.log(0.15 / 0.85))))  # the calibrated posterior at 15%
>>> float(y.mean()), round(em_prior(p, 0.15), 3), round(float(p.mean()), 3)  # EM finds it; the mean does not
(0.3921, 0.39, 0.261)
"""

from __future__ import annotations

import numpy as np


def logit(p: float) -> float:
    p = min(max(float(p), 1e-6), 1 - 1e-6)
    return float(np.log(p / (1 - p)))


def em_prior(
    p: np.ndarray, prior0: float, iters: int = 200, tol: float = 1e-7, weights: np.ndarray | None = None
) -> float:
    """The prior that makes the reweighted posteriors ``p`` (calibrated at ``prior0``) average
    to it (``weights``: each row's weight in that average)."""
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-9, 1 - 1e-9)
    pi = float(prior0)
    for _ in range(iters):
        a, b = pi / prior0, (1 - pi) / (1 - prior0)
        post = a * q / (a * q + b * (1 - q))
        new = float(np.average(post, weights=weights))
        if abs(new - pi) < tol:
            return new
        pi = new
    return pi


def bbse_prior(flag_rate: float, tpr: float, fpr: float) -> float | None:
    """The prior a flag rate implies when only the prior moved (None: the model cannot tell
    the classes apart, ``tpr - fpr`` < 0.05); clipped to [0, 1]."""
    if tpr - fpr < 0.05:
        return None
    return float(np.clip((flag_rate - fpr) / (tpr - fpr), 0.0, 1.0))


def fit_calibration(z: np.ndarray, y: np.ndarray, l2: float = 1e-3, iters: int = 100) -> tuple[float, float]:
    """(slope, bias) minimising the log loss of ``sigmoid(slope * z + bias)``: Newton's
    method, each step halved until the loss falls (an overconfident model's logits run to
    +-40, where most rows are saturated, the Hessian is nearly singular and a full Newton
    step overshoots back and forth forever).

    >>> rng = np.random.default_rng(0)
    >>> y = (rng.random(5_000) < 0.1).astype(float)
    >>> true = rng.normal(np.where(y == 1, 1.0, -1.0), 1.0) * 2 - 2.2  # a calibrated logit
    >>> slope, bias = fit_calibration(20 * true, y)  # a model twenty times too sure of itself
    >>> round(slope * 20, 2), round(bias, 2)
    (0.99, 0.02)
    """
    z64, y64 = np.asarray(z, np.float64), np.asarray(y, np.float64)
    A = np.column_stack([z64, np.ones_like(z64)])
    prior = np.array([1.0, 0.0])
    penalty = np.diag([l2, 0.0])  # on the slope only: a free bias makes the calibrated scores'
    # mean the rows' fraud rate, so EM on these rows stays at their rate (with the bias pulled
    # to 0, at 1% fraud the mean drifts by a sixth and EM runs off to several times the rate)

    def loss(w: np.ndarray) -> float:
        m, d = A @ w, w - prior
        return float(np.mean(np.logaddexp(0.0, m) - y64 * m) + 0.5 * d @ penalty @ d)

    w, f = prior.copy(), loss(prior)
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(A @ w)))
        grad = A.T @ (p - y64) / len(y64) + penalty @ (w - prior)
        hess = (A * (p * (1 - p))[:, None]).T @ A / len(y64) + penalty + 1e-12 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        t, decrease = 1.0, float(grad @ step)
        while (f_t := loss(w - t * step)) > f - 1e-4 * t * decrease and t > 1e-6:
            t /= 2
        if t <= 1e-6:
            break
        w, f = w - t * step, f_t
        if np.abs(t * step).max() < 1e-8:
            break
    return float(w[0]), float(w[1])


def em_miss(z: np.ndarray, pos: np.ndarray) -> float:
    """EM's largest log-odds miss on labelled rows (logits ``z``, frauds ``pos``), cross-fitted:
    the calibration is fitted on every other row and EM asked on the rest, their fraud share
    reweighted to theirs, half and twice it (the rows are labelled, so the answer is known).
    In-sample EM would find the rows' own rate by construction: the calibration's free bias
    makes it a fixed point."""
    worst, fold = 0.0, np.arange(len(z)) % 2 == 0
    for held in (fold, ~fold):
        if pos[held].all() or not pos[held].any() or pos[~held].all() or not pos[~held].any():
            continue
        slope, bias = fit_calibration(z[~held], pos[~held])
        p, y = 1 / (1 + np.exp(-(slope * z[held] + bias))), pos[held]
        rate = float(y.mean())
        for target in (rate, rate / 2, min(2 * rate, 0.6)):
            w = np.where(y, target / rate, (1 - target) / (1 - rate))
            miss = logit(em_prior(p, rate, weights=w)) - logit(target)
            worst = miss if abs(miss) > abs(worst) else worst
    return worst
