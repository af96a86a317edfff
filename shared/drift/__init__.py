"""Drift detection: FIDI on feature means, ConflictRate on rule/model disagreement."""

from shared.drift.conflicts import ConflictRate
from shared.drift.fidi import FIDI

__all__ = ["FIDI", "ConflictRate"]
