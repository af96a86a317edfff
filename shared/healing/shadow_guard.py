"""The shadow guard: does healing lose to never healing, on the same transactions?

Every decision carries the shadow's (the never-healed adapter's) verdict too, so once a
label arrives the healed and the shadow decisions can be costed on the same row. Over the
last ``rows`` such rows decided by the adapter judged (whenever it was live), a paired z
of (healed cost - shadow cost) at or above ``z`` over at least ``min_rows`` means healing
hurts: roll back to the bundle's adapter, heal no more in this episode. Only the judged
adapter's own decisions count: with labels hours late, the labels arriving now describe
the decisions of adapters long replaced, and what they say about those is no verdict on
the one live now.

>>> guard = ShadowGuard(rows=100, min_rows=30, z=2.0)
>>> for k in range(40):
...     guard.add(1.0 if k % 4 else 0.0, version=3)   # healed costs more on 3 rows of 4
>>> guard.n(3), guard.verdict(3) is not None, guard.verdict(4) is None
(40, True, True)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from shared.evaluation import paired_z


@dataclass(frozen=True)
class ShadowGuardConfig:
    on: bool = True  # roll back to the bundle's adapter when healing loses to it
    rows: int = 1000  # recent healed decisions (with labels) compared with the shadow's
    min_rows: int = 300  # fewer than this: no verdict
    z: float = 2.0  # paired z of (healed cost - shadow cost) that means "healing hurts"


class ShadowGuard:
    def __init__(
        self,
        rows: int = ShadowGuardConfig.rows,
        min_rows: int = ShadowGuardConfig.min_rows,
        z: float = ShadowGuardConfig.z,
    ) -> None:
        self.min_rows, self.z_max = min_rows, z
        self.rows = rows
        self._diff: dict[int, deque[float]] = {}  # version -> its last ``rows`` healed - shadow costs

    def add(self, cost_difference: float, version: int) -> None:
        self._diff.setdefault(version, deque(maxlen=self.rows)).append(cost_difference)

    def clear(self) -> None:
        self._diff.clear()

    def _of(self, version: int) -> list[float]:
        return list(self._diff.get(version, ()))

    def n(self, version: int) -> int:
        return len(self._of(version))

    def z(self, version: int) -> float:
        """Paired z of healed-minus-shadow cost: above 0, healing costs more."""
        return paired_z(self._of(version))

    def loses(self, n: int, z: float) -> bool:
        """The guard's rule: a paired z of (healed - shadow cost) of ``z`` over ``n`` rows
        means healing hurts (the rule a re-scoring of the live adapter is judged by too)."""
        return n >= self.min_rows and z >= self.z_max

    def verdict(self, version: int) -> str | None:
        """Why adapter ``version`` loses to the shadow, or None while it does not (or too few
        of its decisions have labels)."""
        diffs = self._of(version)
        n = len(diffs)
        z = paired_z(diffs)
        if not self.loses(n, z):
            return None
        d = float(np.mean(diffs))
        return (
            f"healed decisions cost {d:+.3f} per transaction against the shadow's "
            f"over {n} labelled rows (z={z:.2f})"
        )
