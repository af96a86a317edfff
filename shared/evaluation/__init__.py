"""Evaluation: metrics, expected cost, and the baselines healing is judged against."""

from shared.evaluation.metrics import (
    CostMatrix,
    Metrics,
    average_precision,
    cohen_kappa,
    cost_optimal_threshold,
    evaluate_scores,
    metrics_from_predictions,
    paired_z,
)

__all__ = [
    "CostMatrix",
    "Metrics",
    "average_precision",
    "cohen_kappa",
    "cost_optimal_threshold",
    "evaluate_scores",
    "metrics_from_predictions",
    "paired_z",
]
