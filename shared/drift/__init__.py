"""Drift detection: FIDI on feature means, ConflictRate on rule/model disagreement.

``WindowFIDI`` is the first, batch-level FIDI, kept for the seed protocol and as a baseline.
"""

from shared.drift.conflicts import ConflictRate
from shared.drift.fidi import FIDI
from shared.drift.window import WindowFIDI

__all__ = ["FIDI", "ConflictRate", "WindowFIDI"]
