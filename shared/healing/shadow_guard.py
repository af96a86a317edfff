"""The shadow guard: does healing lose to never healing, on the same transactions?

Every decision carries the shadow's (the never-healed adapter's) verdict too, so once a
label arrives the healed and the shadow decisions can be costed on the same row. Over the
last ``rows`` such rows, a paired z of (healed cost - shadow cost) at or above ``z`` over at
least ``min_rows`` means healing hurts: roll back to the bundle's adapter, heal no more in
this episode.

>>> guard = ShadowGuard(rows=100, min_rows=30, z=2.0)
>>> for k in range(40):
...     guard.add(1.0 if k % 4 else 0.0)   # healed costs more on 3 rows of 4
>>> guard.n, guard.verdict() is not None
(40, True)
"""

from __future__ import annotations

from collections import deque

import numpy as np

from shared.evaluation import paired_z


class ShadowGuard:
    def __init__(self, rows: int = 1000, min_rows: int = 300, z: float = 2.0) -> None:
        self.min_rows, self.z_max = min_rows, z
        self._diff: deque[float] = deque(maxlen=rows)  # healed - shadow cost, per labelled row

    def add(self, cost_difference: float) -> None:
        self._diff.append(cost_difference)

    def clear(self) -> None:
        self._diff.clear()

    @property
    def n(self) -> int:
        return len(self._diff)

    @property
    def z(self) -> float:
        """Paired z of healed-minus-shadow cost: above 0, healing costs more."""
        return paired_z(list(self._diff))

    def verdict(self) -> str | None:
        """Why healing loses to the shadow, or None while it does not (or too few rows)."""
        n = self.n
        if n < self.min_rows:
            return None
        z = self.z
        if z < self.z_max:
            return None
        d = float(np.mean(self._diff))
        return (
            f"healed decisions cost {d:+.3f} per transaction against the shadow's "
            f"over {n} labelled rows (z={z:.2f})"
        )
