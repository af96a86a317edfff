"""The feature log's rate sample: the share of unflagged transactions the healer logs, set
from the rate they arrive at and what a logged row costs.

A stack grows by adding scorers; the healer is one process reading every transaction. Its
feature log writes a row for each (the key, RocksDB's memtable and write-ahead log), and
past the rate it can write it would fall behind: labels would then arrive before their
transactions and wait, and the oldest of those would be dropped. Instead, once the
transactions arrive faster than the log may write (``capacity``), the healer keeps a
sample of the unflagged rows, by id hash as the byte budget's sample does, and says so
(the ratio, the input rate and the capacity are in ``/health`` and the metrics). Flagged
rows (the scorer's alerts, a rule's) are always kept: analysts' verdicts come for them.

The input rate is read from the transactions' record timestamps (when they were produced),
not from how fast the healer reads them, so a healer catching up does not mistake its own
backlog for traffic. The capacity is ``share`` of one core divided by the measured seconds
a logged row costs (or fixed by the operator). The ratio is a power of two, so each sample
holds the next smaller one, and it rises again only with room to spare (``HEADROOM``).

>>> rate = LogRate(capacity=50_000.0)
>>> rate.observe([0.0, 1_000.0], rows=100_000)          # 100,000 rows in one second
0.5
>>> rate.observe([1_000.0, 2_000.0], rows=100_000)      # still twice what the log may write
0.5
>>> rate.observe([2_000.0, 12_000.0], rows=20_000)      # the traffic falls: back to every row
1.0
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from shared.healing.featurelog import MIN_SAMPLE

WINDOW_MS = 10_000.0  # record time the input rate is measured over
HEADROOM = 1.25  # the ratio doubles only when the log could write this much more than it would
MIN_SPAN_MS = 1_000.0  # the rate of less record time than this is read over this much


class LogRate:
    def __init__(self, capacity: float | None = None, share: float = 0.5) -> None:
        """``capacity``: rows a second the log may write (None: ``share`` of one core over
        the measured cost of a row, see :meth:`cost`)."""
        if capacity is not None and capacity <= 0:
            raise ValueError("capacity must be positive")
        if not 0 < share <= 1:
            raise ValueError("share must be in (0, 1]")
        self.fixed, self.share = capacity, share
        self.ratio = 1.0
        self._batches: deque[tuple[float, float, int]] = deque()  # (oldest, newest record time, rows)
        self._in_window = 0  # rows of those batches
        self.input_rate: float | None = None  # transactions a second over them (None: none yet)
        self._seconds, self._rows = 0.0, 0  # time the log has spent writing rows, and how many

    def cost(self, seconds: float, rows: int) -> None:
        """The log has written ``rows`` rows in ``seconds`` so far (what a logged row costs)."""
        self._seconds, self._rows = seconds, rows

    @property
    def capacity(self) -> float | None:
        """Rows a second the log may write (None: nothing measured yet)."""
        if self.fixed is not None:
            return self.fixed
        if self._rows < 10_000 or self._seconds <= 0:
            return None
        return self.share * self._rows / self._seconds

    def observe(self, stamps_ms: Sequence[float], rows: int | None = None) -> float:
        """A batch of transactions with these record timestamps (``rows``: how many, when the
        stamps are a summary such as its oldest and newest); returns the ratio to log at."""
        if not len(stamps_ms):
            return self.ratio
        newest, n = float(max(stamps_ms)), len(stamps_ms) if rows is None else rows
        self._batches.append((float(min(stamps_ms)), newest, n))
        self._in_window += n
        while self._batches[0][1] < newest - WINDOW_MS:
            self._in_window -= self._batches.popleft()[2]
        span = newest - min(oldest for oldest, _, _ in self._batches)
        self.input_rate = self._in_window / max(span, MIN_SPAN_MS) * 1000.0
        self.ratio = self._ratio()
        return self.ratio

    def _ratio(self) -> float:
        rate, cap = self.input_rate, self.capacity
        if rate is None or cap is None or rate <= 0:
            return self.ratio
        r = self.ratio
        while r > MIN_SAMPLE and rate * r > cap:  # too much: halve until it fits
            r /= 2
        while r < 1.0 and rate * r * 2 * HEADROOM <= cap:  # room for twice as many, and to spare
            r *= 2
        return r

    def stats(self) -> dict[str, float | None]:
        rate, cap = self.input_rate, self.capacity
        return {
            "log_rate_ratio": self.ratio,
            "input_rows_per_s": None if rate is None else round(rate, 1),
            "log_capacity_rows_per_s": None if cap is None else round(cap, 1),
        }
