"""ConflictRate: is the share of rule/model conflicts above what clean data shows?

Rules and the model disagree now and then even on clean data. This detector keeps the
conflict counts of the last ``window`` batches and alarms when their rate exceeds the
reference rate by more than ``z`` binomial standard errors (and by at least
``min_excess`` in absolute terms), so chance clusters of conflicts do not start a heal.

>>> cr = ConflictRate(reference_rate=0.01)
>>> for conflicts in [1, 0, 2, 1, 9, 12, 15]:
...     _ = cr.update(conflicts, 100)
>>> cr.elevated, round(cr.rate, 3)
(True, 0.057)
"""

from __future__ import annotations

import math
from collections import deque

from shared.errors import ConfigError


class ConflictRate:
    def __init__(
        self,
        reference_rate: float,
        *,
        window: int = 10,
        min_batches: int = 3,
        z: float = 3.89,
        min_excess: float = 0.02,
    ) -> None:
        if not 0.0 <= reference_rate < 1.0:
            raise ConfigError(f"reference_rate must lie in [0, 1), got {reference_rate}")
        if window < 1 or not 1 <= min_batches <= window:
            raise ConfigError("need window >= 1 and 1 <= min_batches <= window")
        self.reference_rate = reference_rate
        self.z, self.min_excess, self.min_batches = z, min_excess, min_batches
        self._conf: deque[int] = deque(maxlen=window)
        self._rows: deque[int] = deque(maxlen=window)

    def update(self, conflicts: int, rows: int) -> ConflictRate:
        if rows < 0 or not 0 <= conflicts <= rows:
            raise ValueError(f"need 0 <= conflicts <= rows, got {conflicts}, {rows}")
        if rows:
            self._conf.append(conflicts)
            self._rows.append(rows)
        return self

    @property
    def rate(self) -> float:
        n = sum(self._rows)
        return sum(self._conf) / n if n else 0.0

    @property
    def elevated(self) -> bool:
        if len(self._rows) < self.min_batches:
            return False
        n = sum(self._rows)
        r0 = max(self.reference_rate, 1.0 / n)
        limit = r0 + max(self.z * math.sqrt(r0 * (1 - r0) / n), self.min_excess)
        return self.rate > limit
