from __future__ import annotations

import numpy as np
import pytest

from shared.errors import ConfigError
from shared.evaluation import (
    CostMatrix,
    average_precision,
    cost_optimal_threshold,
    evaluate_scores,
    metrics_from_predictions,
)


def test_metrics_by_hand():
    y = [1, 1, 0, 0, 0, 1]
    pred = [1, 0, 1, 0, 0, 1]
    m = metrics_from_predictions(y, pred, CostMatrix(fp=1, fn=10))
    assert (m.tp, m.fp, m.fn, m.tn) == (2, 1, 1, 2)
    assert m.accuracy == pytest.approx(4 / 6)
    assert m.precision == pytest.approx(2 / 3) and m.recall == pytest.approx(2 / 3)
    assert m.f1 == pytest.approx(2 / 3)
    assert m.cost == pytest.approx((1 + 10) / 6)
    assert "pr_auc" not in m.to_dict()


def test_degenerate_rates_are_zero_not_nan():
    m = metrics_from_predictions([0, 0], [0, 0], CostMatrix())
    assert (m.precision, m.recall, m.f1, m.cost) == (0.0, 0.0, 0.0, 0.0)


def brute_ap(y, s):
    y, s = np.asarray(y), np.asarray(s)
    total, n_pos = 0.0, y.sum()
    prev_recall = 0.0
    for t in sorted(set(s), reverse=True):
        flag = s >= t
        tp = (flag & (y == 1)).sum()
        recall = tp / n_pos
        total += (recall - prev_recall) * tp / flag.sum()
        prev_recall = recall
    return total


def test_average_precision_matches_brute_force_with_ties():
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.2
    s = np.round(rng.random(300) + y * 0.3, 2)  # many ties
    assert average_precision(y, s) == pytest.approx(brute_ap(y, s))
    assert average_precision([0, 0], [0.1, 0.2]) == 0.0


def test_cost_optimal_threshold_is_optimal():
    rng = np.random.default_rng(1)
    y = (rng.random(500) < 0.15).astype(float)
    s = np.clip(rng.normal(0.3 + 0.3 * y, 0.2), 0, 1)
    costs = CostMatrix(fp=1, fn=10)
    t = cost_optimal_threshold(y, s, costs)
    best = min(metrics_from_predictions(y, s >= u, costs).cost for u in np.r_[s, 2.0])
    assert evaluate_scores(y, s, t, costs).cost == pytest.approx(best)


def test_threshold_when_flagging_nothing_is_best():
    t = cost_optimal_threshold([0, 0, 0], [0.2, 0.5, 0.9], CostMatrix())
    assert t > 0.9


def test_costs_validated_and_bayes_threshold():
    assert CostMatrix(fp=1, fn=10).bayes_threshold == pytest.approx(1 / 11)
    with pytest.raises(ConfigError):
        CostMatrix(fp=0, fn=1)
