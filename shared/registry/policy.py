"""When live quality has degraded enough to roll back.

The research system's policy, made configurable: after the first heal, its post-heal
F1 and accuracy become the baseline; once ``min_updates`` measurements exist, the
rolling mean over the last ``window`` is compared with it.

>>> watch = QualityWatch()
>>> watch.set_baseline(accuracy=0.80, f1=0.60)
>>> for f1 in (0.58, 0.50, 0.45):
...     _ = watch.update(accuracy=0.80, f1=f1)
>>> watch.degraded
'rolling F1 0.510 is 0.090 below the baseline 0.600 (limit 0.08)'
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RollbackPolicy:
    f1_drop: float = 0.08  # roll back when rolling F1 falls this far below the baseline
    accuracy_drop: float = 0.10  # ... or rolling accuracy this far
    window: int = 5  # measurements in the rolling mean
    min_updates: int = 3  # measurements needed before judging


class QualityWatch:
    def __init__(self, policy: RollbackPolicy | None = None) -> None:
        self.policy = policy or RollbackPolicy()
        self.baseline_f1: float | None = None
        self.baseline_accuracy: float | None = None
        self._f1: deque[float] = deque(maxlen=self.policy.window)
        self._acc: deque[float] = deque(maxlen=self.policy.window)

    def set_baseline(self, accuracy: float, f1: float) -> None:
        self.baseline_accuracy, self.baseline_f1 = accuracy, f1

    def update(self, accuracy: float, f1: float) -> QualityWatch:
        self._acc.append(accuracy)
        self._f1.append(f1)
        return self

    @property
    def n(self) -> int:
        """Measurements in the rolling window."""
        return len(self._f1)

    def reset_window(self) -> None:
        """Forget recent measurements (after a rollback, judge the restored adapter afresh)."""
        self._f1.clear()
        self._acc.clear()

    @property
    def rolling_f1(self) -> float:
        return float(np.mean(self._f1)) if self._f1 else float("nan")

    @property
    def rolling_accuracy(self) -> float:
        return float(np.mean(self._acc)) if self._acc else float("nan")

    @property
    def degraded(self) -> str | None:
        """Why quality has degraded, or None."""
        if self.baseline_f1 is None or self.baseline_accuracy is None:
            return None
        if len(self._f1) < self.policy.min_updates:
            return None
        f1, acc = self.rolling_f1, self.rolling_accuracy
        if self.baseline_f1 - f1 > self.policy.f1_drop:
            return (
                f"rolling F1 {f1:.3f} is {self.baseline_f1 - f1:.3f} below the baseline "
                f"{self.baseline_f1:.3f} (limit {self.policy.f1_drop})"
            )
        if self.baseline_accuracy - acc > self.policy.accuracy_drop:
            return (
                f"rolling accuracy {acc:.3f} is {self.baseline_accuracy - acc:.3f} below the baseline "
                f"{self.baseline_accuracy:.3f} (limit {self.policy.accuracy_drop})"
            )
        return None
