"""Live quality: how the healed adapters' decisions fare once their labels arrive.

Labels are judged in chunks of ``chunk`` against the decisions the healed adapters made;
each chunk's accuracy and F1 feed the :class:`~shared.registry.QualityWatch`. Its baseline
is the rolling quality of the first ``policy.window`` chunks (the first healed adapter's
decisions); the watch then says when quality has degraded enough to roll back.

>>> from shared.evaluation import CostMatrix
>>> from shared.registry import RollbackPolicy
>>> live = LiveQuality(RollbackPolicy(window=2, min_updates=2), CostMatrix(), chunk=2)
>>> for y, fraud in [(1, True), (0, False), (1, True), (0, False)]:
...     live.add(y, fraud)
>>> live.watch.baseline_f1
1.0
"""

from __future__ import annotations

from shared.evaluation import CostMatrix, metrics_from_predictions
from shared.registry import QualityWatch, RollbackPolicy


class LiveQuality:
    def __init__(self, policy: RollbackPolicy, costs: CostMatrix, chunk: int = 100) -> None:
        self.policy, self.costs, self.chunk = policy, costs, chunk
        self.watch = QualityWatch(policy)
        self._judged: list[tuple[float, bool]] = []  # (label, healed decision) not yet in a chunk
        self.last_cost: float | None = None  # realised cost per transaction of the last chunk

    def add(self, label: float, fraud: bool) -> None:
        self._judged.append((label, fraud))
        while len(self._judged) >= self.chunk:
            chunk, self._judged = self._judged[: self.chunk], self._judged[self.chunk :]
            m = metrics_from_predictions([y for y, _ in chunk], [f for _, f in chunk], self.costs)
            self.watch.update(m.accuracy, m.f1)
            self.last_cost = m.cost
            if self.watch.baseline_f1 is None and self.watch.n >= self.policy.window:
                self.watch.set_baseline(self.watch.rolling_accuracy, self.watch.rolling_f1)
