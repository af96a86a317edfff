"""A drift the frozen model's own verdicts show: its flag rate against its validation rate.

A fraud rate that doubles moves each informative feature's mean only a little (by the
change of share times the classes' distance), often less than FIDI's false-alarm control
lets it see; the frozen model's flag rate moves by about the same factor as the fraud.
Every decision carries the shadow's verdict (the bundle's own adapter), so the healer can
count it: over the last ``rows`` decisions, a two-sample z of the flag rate against the
validation rows' rate (both sampled: the pooled binomial variance with both sizes) of at
least ``z``, and a ratio of at least ``ratio`` either way, is a drift; back within ``z/2``
standard errors, it has recovered. The label-free diagnosis then says whether the change
is a fraud rate, a unit change, or neither.

>>> det = FlagDrift(reference=0.05, reference_rows=4000, rows=1000, z=5.0, ratio=1.3)
>>> det.update([False] * 950 + [True] * 50) is None       # the validation rate: no drift
True
>>> det.update([True] * 110 + [False] * 890)              # 11% flagged now
'drift'
>>> det.update([True] * 50 + [False] * 950), det.drift_detected   # back at 5%
('recovered', False)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from shared.errors import ConfigError

if TYPE_CHECKING:
    from shared.labelfree import LabelFreeReference


class FlagDrift:
    def __init__(
        self, reference: float, reference_rows: int, rows: int = 2000, z: float = 5.0, ratio: float = 1.3
    ) -> None:
        if not 0 <= reference <= 1 or reference_rows < 1 or rows < 10 or z <= 0 or ratio < 1:
            raise ConfigError(
                f"need 0 <= reference <= 1, reference_rows >= 1, rows >= 10, z > 0, ratio >= 1; "
                f"got {reference}, {reference_rows}, {rows}, {z}, {ratio}"
            )
        self.reference, self.reference_rows = reference, reference_rows
        self.rows, self.z, self.ratio = rows, z, ratio
        self._flags: deque[bool] = deque(maxlen=rows)
        self._count = 0
        self._drift = False

    @classmethod
    def for_reference(
        cls, ref: LabelFreeReference | None, rows: int, z: float, ratio: float
    ) -> FlagDrift | None:
        """Against the frozen model's flag rate on the validation rows the label-free
        reference scored (None: no reference, or fewer than 100 such rows)."""
        if ref is None or ref.scores.rows < 100:
            return None
        return cls(ref.scores.flag_rate, ref.scores.rows, rows, z, ratio)

    @property
    def drift_detected(self) -> bool:
        return self._drift

    @property
    def rate(self) -> float:
        return self._count / len(self._flags) if self._flags else float("nan")

    def statistic(self) -> float:
        """Two-sample z of the window's flag rate against the reference rate."""
        n, m = len(self._flags), self.reference_rows
        if not n:
            return 0.0
        pooled = (self._count + self.reference * m) / (n + m)
        se = float(np.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / n + 1 / m)))
        return (self.rate - self.reference) / se

    def update(self, flags: Sequence[bool]) -> str | None:
        """A batch of the frozen model's verdicts; ``drift`` or ``recovered`` on a change of state."""
        for f in flags:
            if len(self._flags) == self.rows:
                self._count -= self._flags[0]
            self._flags.append(bool(f))
            self._count += bool(f)
        if len(self._flags) < self.rows:
            return None
        z = abs(self.statistic())
        lo, hi = sorted((self.rate, self.reference))
        far = hi >= lo * self.ratio if lo > 0 else hi > 0
        if not self._drift and z >= self.z and far:
            self._drift = True
            return "drift"
        if self._drift and z < self.z / 2:
            self._drift = False
            return "recovered"
        return None
