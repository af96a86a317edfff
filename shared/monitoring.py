"""The monitor's core: FIDI over transactions (judged row by row), and the conflict rate
over decisions; it speaks only when a state changes (drift / recovered).

Alerts (values for ``drift-alerts``, keyed by feature or detector):

* FIDI enters drift: one alert keyed ``fidi`` (statistic: the FIDI index, threshold 1.0)
  and one per drifting feature (statistic: its shift in reference standard deviations,
  threshold: ``min_effect``), all ``state = "drift"``;
* FIDI recovers: the same keys with ``state = "recovered"``;
* the conflict rate becomes elevated / normal again: key ``conflicts``; the ``drift`` one
  says the drift began ``onset_rows`` back: the rows of the fewest batches the conflict
  rate alarms on (``min_batches`` x ``batch_rows``);
* a bundle with category fields: the chi-square test of their frequencies
  (:class:`~shared.drift.categories.CategoryShift`) enters drift / recovers: one alert
  keyed ``categories`` (its index, threshold 1.0; ``onset_rows``: the most telling
  window) and one per field that moved (statistic: Cohen's w; ``category``, ``share``
  and ``reference_share`` name the category that moved most).

The healer opens and closes its episodes on the summary alerts (``fidi``, ``conflicts``,
``categories``): :mod:`shared.healing.episodes`.

**Blocks.** A monitor that reads only some partitions (one of a group, see
``services/monitor``) cannot judge windows of the whole stream itself. It cuts its rows
into blocks (:meth:`DriftMonitor.summarise`, ``block_rows`` each, 16 by default: FIDI's
shortest window) and keeps only each block's row count and sums (of FIDI's standardised
scores, of the category cells): sufficient statistics. Blocks from several monitors add up
to exactly the windows of their combined stream, judged at the end of each block by
:meth:`DriftMonitor.add_blocks`. A monitor alone judges every row
(:meth:`DriftMonitor.add_transactions`): judged only at block ends, a weak drift whose
index just touches 1 on a few rows can be seen a window later (measured in
docs/operations.md).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.bundle import Bundle
from shared.drift import FIDI, ConflictRate, WindowFIDI
from shared.drift.fidi import SCALES
from shared.messages import Alert
from shared.messages.alerts import Detail

BLOCK_ROWS = 16  # rows per block a monitor of a group publishes: FIDI's shortest window


@dataclass(frozen=True)
class Blocks:
    """A stretch of transactions as the detectors need it (:meth:`DriftMonitor.summarise`):
    per block its rows, the event time of its first row (NaN: none), the sums of FIDI's
    centred scores and of the category cells (None without category fields)."""

    rows: np.ndarray  # (B,) int
    ts: np.ndarray  # (B,) float
    fidi: np.ndarray  # (B, features)
    cells: np.ndarray | None  # (B, cells)

    def __len__(self) -> int:
        return len(self.rows)


class DriftMonitor:
    def __init__(
        self,
        bundle: Bundle,
        batch_rows: int = 100,
        detector: FIDI | WindowFIDI | None = None,
        **fidi: Any,
    ) -> None:
        self.bundle, self._fidi_options = bundle, fidi
        self.batch_rows = batch_rows  # decisions per conflict-rate update
        self.fidi = detector if detector is not None else bundle.new_fidi(**fidi)
        self.conflicts = ConflictRate(float(bundle.info.get("reference_conflict_rate", 0.0)))
        self.categories = bundle.new_category_shift()
        longest = self.fidi.scales[-1] if isinstance(self.fidi, FIDI) else SCALES[-1]
        self._ts: deque[float | None] = deque(maxlen=longest)  # event times of the rows an onset can name
        self._block_ts: deque[tuple[int, float]] = deque(maxlen=longest)  # (rows, first event time) a block
        self.alarm_rows: list[int] = []  # the row (counted from the first one seen) of each FIDI alarm
        self._conf_pending: list[bool] = []
        self._alarmed: list[str] = []
        self.conflicts_elevated = False
        self.rows = 0

    def forget_judged(self) -> None:
        """Start the detectors again from the reference (a monitor that becomes its group's
        judge again: its windows from an earlier turn would be stale); the decisions read
        but not yet counted stay."""
        assert isinstance(self.fidi, FIDI), "a group's judge runs the row-level FIDI"
        self.fidi = self.bundle.new_fidi(**self._fidi_options)
        self.conflicts = ConflictRate(self.conflicts.reference_rate)
        self.categories = self.bundle.new_category_shift()
        self._ts.clear()
        self._block_ts.clear()
        self.alarm_rows, self._alarmed = [], []
        self.conflicts_elevated, self.rows = False, 0

    def add_transactions(self, X: np.ndarray, ts: Sequence[float | None] | None = None) -> list[Alert]:
        if len(X) == 0:
            return []
        self.rows += len(X)
        self._ts.extend(ts if ts is not None else [None] * len(X))
        self.fidi.update(X)
        alerts = self._fidi_changed(len(X), lambda back: self._ts[-min(back, len(self._ts))])
        if self.categories is not None:
            self.categories.update(X)
            alerts += self._category_alerts(lambda back: self._ts[-min(back, len(self._ts))])
        return alerts

    def summarise(
        self, X: np.ndarray, ts: Sequence[float | None] | None = None, block_rows: int = BLOCK_ROWS
    ) -> Blocks:
        """Rows cut into blocks of ``block_rows``, as :meth:`add_blocks` (here or in another
        monitor on the same bundle) takes them."""
        assert isinstance(self.fidi, FIDI), "blocks need the row-level FIDI"
        rows, sums = self.fidi.summarise(X, block_rows)
        first = np.full(len(rows), np.nan) if ts is None else np.array(ts, np.float64)[::block_rows]
        cells = None if self.categories is None else self.categories.summarise(X, block_rows)[1]
        return Blocks(rows, first, sums, cells)

    def add_blocks(self, blocks: Blocks) -> list[Alert]:
        """Judge blocks from :meth:`summarise` at the end of each; the alerts they raise."""
        if len(blocks) == 0:
            return []
        assert isinstance(self.fidi, FIDI), "blocks need the row-level FIDI"
        n = int(blocks.rows.sum())
        self.rows += n
        self._block_ts.extend(zip(blocks.rows.tolist(), blocks.ts.tolist(), strict=True))
        self.fidi.update_blocks(blocks.rows, blocks.fidi)
        alerts = self._fidi_changed(n, self._block_time)
        if self.categories is not None and blocks.cells is not None:
            self.categories.update_blocks(blocks.rows, blocks.cells)
            alerts += self._category_alerts(self._block_time)
        return alerts

    def _block_time(self, back: int) -> float | None:
        """The event time of the row ``back`` rows before the newest (the first row of the
        block holding it; None where not stamped)."""
        held, at = 0, float("nan")
        for rows, first in reversed(self._block_ts):
            held, at = held + rows, first
            if held >= back:
                break
        return None if at != at else at  # NaN: not stamped (further back than kept: the oldest kept)

    def _fidi_changed(self, n: int, time_of: Callable[[int], float | None]) -> list[Alert]:
        """The FIDI alerts of the last ``n`` rows' update."""
        if self.fidi.drift_detected:
            self.alarm_rows.append(self.rows - n + (self.fidi.detected_at or 0))
            self._alarmed = self.fidi.drifting_features
            onset = self.fidi.onset_rows()
            return self._fidi_alerts("drift", onset_rows=onset, onset_ts=time_of(onset) if onset else None)
        if self.fidi.recovered:
            alerts = self._fidi_alerts("recovered")
            self._alarmed = []
            return alerts
        return []

    def _category_alerts(self, time_of: Callable[[int], float | None]) -> list[Alert]:
        cat = self.categories
        assert cat is not None
        if not (cat.drift_detected or cat.recovered):
            return []
        if cat.recovered:
            return [Alert("categories", "categories", cat.index, 1.0, "recovered")]
        onset = cat.onset_rows()
        onset_ts = time_of(onset)
        alerts = [
            Alert("categories", "categories", cat.index, 1.0, "drift", onset_rows=onset, onset_ts=onset_ts)
        ]
        effect = dict(zip(cat.fields, cat.effect, strict=True))
        for field, (category, share, reference) in cat.moved.items():
            details: dict[str, Detail] = {"category": category, "share": share, "reference_share": reference}
            alerts.append(Alert("categories", field, effect[field], cat.min_effect, "drift", details=details))
        return alerts

    @property
    def alarmed(self) -> list[str]:
        """The features the current FIDI drift alarmed on (empty outside a drift)."""
        return list(self._alarmed)

    def _fidi_alerts(self, state: str, **summary: Any) -> list[Alert]:
        """The summary alert (key ``fidi``) and one per feature that alarmed."""
        effect = dict(zip(self.fidi.features, self.fidi.effect, strict=True))
        alerts = [Alert("fidi", "fidi", self.fidi.index, 1.0, state, **summary)]
        return alerts + [Alert("fidi", f, effect[f], self.fidi.min_effect, state) for f in self._alarmed]

    def add_conflicts(self, flags: list[bool]) -> list[Alert]:
        return self.add_conflict_counts(self.conflict_counts(flags))

    def conflict_counts(self, flags: list[bool]) -> list[tuple[int, int]]:
        """Decisions' conflict flags as (conflicts, decisions) per ``batch_rows`` decisions,
        as :meth:`add_conflict_counts` (here or in another monitor) takes them; a short
        remainder waits for the next call."""
        self._conf_pending += flags
        k = len(self._conf_pending) // self.batch_rows * self.batch_rows
        done, self._conf_pending = self._conf_pending[:k], self._conf_pending[k:]
        return [(sum(done[i : i + self.batch_rows]), self.batch_rows) for i in range(0, k, self.batch_rows)]

    def add_conflict_counts(self, counts: Sequence[tuple[int, int]]) -> list[Alert]:
        """Update the conflict rate chunk by chunk; the alerts of a change of state."""
        alerts: list[Alert] = []
        for conflicts, rows in counts:
            self.conflicts.update(conflicts, rows)
            elevated = self.conflicts.elevated
            if elevated != self.conflicts_elevated:
                self.conflicts_elevated = elevated
                state = "drift" if elevated else "recovered"
                c = self.conflicts
                onset = c.min_batches * self.batch_rows if elevated else None
                alerts.append(
                    Alert("conflicts", "conflicts", c.rate, c.reference_rate, state, onset_rows=onset)
                )
        return alerts
