"""A bounded buffer of recent transactions, joined by id with labels that arrive late.

Labels (chargebacks, analyst verdicts) come long after the decision. The buffer keeps
the last ``capacity`` transactions; a label joins its transaction by id when it
arrives, and one that arrives before its transaction waits (bounded) until it comes.
Nothing reads a label before it has arrived: :meth:`snapshot` shows NaN for the rest.

>>> import numpy as np
>>> buf = LabelJoinBuffer(capacity=3, n_features=1)
>>> buf.add_transactions(["a", "b", "c", "d"], np.arange(4.0).reshape(4, 1))
>>> buf.add_labels(["b", "c", "x"], [1, 0, 1])
>>> snap = buf.snapshot()
>>> snap.X.ravel().tolist(), snap.y.tolist()
([1.0, 2.0, 3.0], [1.0, 0.0, nan])
>>> buf.stats()["labels_pending"]
1
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from shared.healing.cycle import HealBatch


class LabelJoinBuffer:
    def __init__(self, capacity: int, n_features: int, max_pending: int | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._X = np.zeros((capacity, n_features), dtype=np.float32)
        self._y = np.full(capacity, np.nan, dtype=np.float32)
        self._seq = np.full(capacity, -1, dtype=np.int64)  # stream position of each slot
        self._ts = np.zeros(capacity, dtype=np.float64)
        self._slot: dict[str, int] = {}
        self._ids: list[str | None] = [None] * capacity
        self._pending: OrderedDict[str, tuple[float, float]] = OrderedDict()  # id -> (label, ts)
        self._evicted: OrderedDict[str, None] = OrderedDict()  # recently evicted ids (bounded)
        self._max_pending = max_pending if max_pending is not None else capacity
        self._seen = 0
        self._delays_tx: deque[int] = deque(maxlen=1000)  # recent label delays
        self._delays_ms: deque[float] = deque(maxlen=1000)
        self.labels_joined = 0
        self.labels_dropped = 0  # waited for a transaction that never came, until the wait list was full
        self.labels_expired = 0  # arrived after their transaction had left the buffer
        self.labels_withdrawn = 0  # taken back by forget_labels

    def __len__(self) -> int:
        return min(self._seen, self.capacity)

    def add_transactions(self, ids: Sequence[str], X: np.ndarray, ts: Sequence[float] | None = None) -> None:
        X = np.asarray(X, dtype=np.float32)
        for k, tx_id in enumerate(ids):
            if tx_id in self._slot:  # a duplicate delivery: keep the first
                continue
            slot = self._seen % self.capacity
            old = self._ids[slot]
            if old is not None:
                del self._slot[old]
                self._evicted[old] = None
                if len(self._evicted) > self.capacity:
                    self._evicted.popitem(last=False)
            self._ids[slot] = tx_id
            self._slot[tx_id] = slot
            self._X[slot] = X[k]
            self._y[slot] = np.nan
            self._seq[slot] = self._seen
            self._ts[slot] = ts[k] if ts is not None else 0.0
            self._seen += 1
            early = self._pending.pop(tx_id, None)
            if early is not None:
                self._join(slot, early[0], early[1])

    def add_labels(
        self, ids: Sequence[str], labels: Sequence[float], ts: Sequence[float] | None = None
    ) -> None:
        for k, tx_id in enumerate(ids):
            label = float(labels[k])
            when = ts[k] if ts is not None else 0.0
            slot = self._slot.get(tx_id)
            if slot is not None:
                self._join(slot, label, when)
            elif tx_id in self._evicted:
                self.labels_expired += 1  # its transaction already left the buffer: too late to use
            else:
                self._pending[tx_id] = (label, when)
                while len(self._pending) > self._max_pending:
                    self._pending.popitem(last=False)
                    self.labels_dropped += 1

    def _join(self, slot: int, label: float, ts: float) -> None:
        if np.isnan(self._y[slot]):
            self.labels_joined += 1
            self._delays_tx.append(self._seen - 1 - int(self._seq[slot]))
            if ts and self._ts[slot]:
                self._delays_ms.append(ts - self._ts[slot])
        self._y[slot] = label

    def forget_labels(self, ids: Sequence[str]) -> int:
        """Withdraw labels found untrustworthy (a poisoned burst); returns how many were held."""
        n = 0
        for tx_id in ids:
            slot = self._slot.get(tx_id)
            if slot is not None and not np.isnan(self._y[slot]):
                self._y[slot] = np.nan
                n += 1
            elif self._pending.pop(tx_id, None) is not None:
                n += 1
        self.labels_withdrawn += n
        return n

    def position_since(self, ts: float) -> int:
        """Stream position of the oldest buffered row stamped at or after ``ts`` (else ``seen``)."""
        rows = np.flatnonzero((self._seq >= 0) & (self._ts >= ts))
        return int(self._seq[rows].min()) if len(rows) else self._seen

    @property
    def seen(self) -> int:
        """Transactions added so far; the next one gets this stream position."""
        return self._seen

    def snapshot(self, last: int | None = None, since: int = 0) -> HealBatch:
        """Buffered rows at stream position >= ``since`` (at most the ``last`` newest), oldest
        first; ``y`` is NaN where no label has arrived."""
        used = np.flatnonzero(self._seq >= since)
        order = used[np.argsort(self._seq[used])]
        if last is not None:
            order = order[-last:]
        return HealBatch(self._X[order].copy(), self._y[order].copy())

    def stats(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "rows": len(self),
            "seen": self._seen,
            "labelled": int((~np.isnan(self._y[self._seq >= 0])).sum()),
            "labels_joined": self.labels_joined,
            "labels_pending": len(self._pending),
            "labels_dropped": self.labels_dropped,
            "labels_expired": self.labels_expired,
            "labels_withdrawn": self.labels_withdrawn,
        }
        if self._delays_tx:
            d["label_delay_tx_p50"] = float(np.median(self._delays_tx))
        if self._delays_ms:
            d["label_delay_ms_p50"] = float(np.median(self._delays_ms))
        return d
