"""Healing: the composite loss, one heal cycle with its guards, the late-label join and its feature log."""

from shared.healing.cycle import HealBatch, HealConfig, HealResult, heal_cycle
from shared.healing.featurelog import FeatureLog
from shared.healing.join import LabelJoin
from shared.healing.loss import composite_loss

__all__ = [
    "FeatureLog",
    "HealBatch",
    "HealConfig",
    "HealResult",
    "LabelJoin",
    "composite_loss",
    "heal_cycle",
]
