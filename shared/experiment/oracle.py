"""The oracle: the same architecture retrained on the drifted labels, scored out of sample."""

from __future__ import annotations

import numpy as np

from shared.evaluation import CostMatrix, cost_optimal_threshold
from shared.model import ModelConfig
from shared.training import TrainConfig, split_validation, train_model


def oracle_scores(
    X: np.ndarray, y: np.ndarray, config: ModelConfig, costs: CostMatrix, seed: int
) -> np.ndarray:
    """Out-of-sample scores of the same architecture retrained on drifted rows ``X, y``.

    Two folds: each half is scored by a model trained on the other, so no row is scored
    by a model that saw its label. As the bundle is trained, each fold's model learns on
    four fifths of its half and picks its cost-optimal threshold on the fifth it did not
    learn (a threshold picked on the rows a model learnt sits too high: an overconfident
    model seems to miss no fraud there); its scores are shifted so that threshold maps to
    the Bayes threshold ``costs.bayes_threshold``.
    """
    fold = np.arange(len(y)) % 2
    scores = np.zeros(len(y), dtype=np.float64)
    for k in (0, 1):
        rows = np.flatnonzero(fold != k)
        learn, held = split_validation(len(rows), y[rows], 0.2, seed)
        model, _ = train_model(X[rows[learn]], y[rows[learn]], config, TrainConfig(seed=seed))
        t = cost_optimal_threshold(y[rows[held]], model.predict_proba(X[rows[held]]), costs)
        scores[fold == k] = _rethreshold(model.predict_proba(X[fold == k]), t, costs.bayes_threshold)
    return scores


def _rethreshold(p: np.ndarray, t: float, target: float) -> np.ndarray:
    """Monotone map of scores taking ``t`` to ``target`` (a shift in logit space)."""

    def logit(v: np.ndarray | float) -> np.ndarray:
        q = np.clip(np.asarray(v, dtype=np.float64), 1e-7, 1 - 1e-7)
        out: np.ndarray = np.log(q) - np.log1p(-q)
        return out

    shifted = logit(p) - logit(t) + logit(target)
    result: np.ndarray = 1.0 / (1.0 + np.exp(-shifted))
    return result
