"""What each recent decision was: the live verdict, the adapter version that made it, and
the frozen shadow's verdict on the same transaction. Arriving labels are judged against
them (the label guard, live quality, the shadow guard).

>>> memory = VerdictMemory(capacity=2)
>>> memory.add(["a", "b", "c"], [True, False, True], [1, 1, 2], [False, False, True])
>>> memory.get("a") is None, memory.get("c")
(True, Verdict(fraud=True, version=2, shadow_fraud=True))
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import NamedTuple


class Verdict(NamedTuple):
    fraud: bool  # what the live adapter decided
    version: int  # the adapter version that decided it
    shadow_fraud: bool | None  # what the never-healed adapter decided (None: not known)


class VerdictMemory:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._verdicts: OrderedDict[str, Verdict] = OrderedDict()

    def __len__(self) -> int:
        return len(self._verdicts)

    def add(
        self,
        ids: Sequence[str],
        fraud: Sequence[bool],
        versions: Sequence[int],
        shadow_fraud: Sequence[bool] | None = None,
    ) -> None:
        shadow: Sequence[bool | None] = shadow_fraud if shadow_fraud is not None else [None] * len(ids)
        for tx_id, f, v, sf in zip(ids, fraud, versions, shadow, strict=True):
            self._verdicts[tx_id] = Verdict(bool(f), int(v), None if sf is None else bool(sf))
        while len(self._verdicts) > self.capacity:
            self._verdicts.popitem(last=False)

    def get(self, tx_id: str) -> Verdict | None:
        return self._verdicts.get(tx_id)
