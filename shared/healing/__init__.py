"""Healing: the composite loss, one heal cycle with its guards, and the late-label buffer."""

from shared.healing.buffer import LabelJoinBuffer
from shared.healing.cycle import HealBatch, HealConfig, HealResult, heal_cycle
from shared.healing.loss import composite_loss

__all__ = [
    "HealBatch",
    "HealConfig",
    "HealResult",
    "LabelJoinBuffer",
    "composite_loss",
    "heal_cycle",
]
