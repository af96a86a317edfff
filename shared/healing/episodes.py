"""Drift episodes, decided from the detectors' summary alerts in one place.

An episode is open while any detector (FIDI, the conflict rate) is in drift: it opens on
the first ``drift`` summary alert and closes when the last alarmed detector has
``recovered``. The opening alert names the onset (``onset_rows`` back, or the event time
``onset_ts`` of the first drifted row); healing then uses only rows from the onset on.

>>> from shared.messages import Alert
>>> tracker = EpisodeTracker()
>>> tracker.update(Alert("conflicts", "conflicts", 0.2, 0.05, "drift"))
'open'
>>> tracker.update(Alert("fidi", "fidi", 1.4, 1.0, "drift")) is None   # already open
True
>>> tracker.update(Alert("fidi", "fidi", 0.3, 1.0, "recovered")) is None   # conflicts still alarm
True
>>> tracker.update(Alert("conflicts", "conflicts", 0.01, 0.05, "recovered"))
'close'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared.healing.buffer import LabelJoinBuffer
from shared.healing.events import EpisodeClosed, EpisodeOpened
from shared.messages import Alert


@dataclass
class Episode:
    start: int  # stream position of the first row of the episode (the onset)
    trigger: str  # the detector that opened it
    pending_ts: float | None = None  # the onset's event time, until a row that recent arrives


class EpisodeTracker:
    """Which detectors are in drift, from their summary alerts (the monitor publishes state
    changes only, so a detector's last summary alert is its state)."""

    def __init__(self) -> None:
        self.alarmed: set[str] = set()

    def update(self, alert: Alert) -> Literal["open", "close"] | None:
        """``open`` when the first detector alarms, ``close`` when the last recovers."""
        if not alert.summary:
            return None  # per-feature alerts repeat what the summary alert says
        was = bool(self.alarmed)
        if alert.state == "drift":
            self.alarmed.add(alert.feature)
        elif alert.state == "recovered":
            self.alarmed.discard(alert.feature)
        if self.alarmed and not was:
            return "open"
        if was and not self.alarmed:
            return "close"
        return None


class Episodes:
    """The open episode, if any: where it begins in the stream (a buffer position) and where
    its snapshots begin in the registry (``seq``, kept after it closes).

    >>> import numpy as np
    >>> from shared.messages import Alert
    >>> buffer = LabelJoinBuffer(capacity=100, n_features=1)
    >>> ts = [float(i) for i in range(50)]   # event times
    >>> buffer.add_transactions([f"t{i}" for i in range(50)], np.zeros((50, 1)), ts)
    >>> episodes = Episodes(buffer)
    >>> drift = Alert("fidi", "fidi", 1.5, 1.0, "drift", onset_rows=20, onset_ts=30.0)
    >>> episodes.on_alert(drift, registry_len=3)
    EpisodeOpened(start=30, trigger='fidi')
    >>> calm = Alert("fidi", "fidi", 0.2, 1.0, "recovered")
    >>> episodes.on_alert(calm, registry_len=9), episodes.seq
    (EpisodeClosed(trigger='fidi'), 3)
    """

    def __init__(self, buffer: LabelJoinBuffer, default_onset: int = 1000) -> None:
        self.buffer, self.default_onset = buffer, default_onset
        self.alarms = EpisodeTracker()
        self.current: Episode | None = None
        self.seq = 0  # registry length when the last episode opened

    def on_alert(self, alert: Alert, registry_len: int) -> EpisodeOpened | EpisodeClosed | None:
        change = self.alarms.update(alert)
        if change == "open":
            onset = alert.onset_rows or self.default_onset
            return self.open(registry_len, onset, alert.onset_ts, trigger=alert.feature)
        if change == "close":
            return self.close(trigger=alert.feature)
        return None

    def open(
        self, registry_len: int, onset_rows: int = 0, onset_ts: float | None = None, trigger: str = "manual"
    ) -> EpisodeOpened | None:
        """An episode that began ``onset_rows`` transactions ago, or at the first row stamped at
        or after ``onset_ts`` (epoch ms; other consumers' positions differ from ours, timestamps
        do not). None if one is already open."""
        if self.current is not None:
            return None
        b = self.buffer
        start = b.position_since(onset_ts) if onset_ts is not None else max(0, b.seen - onset_rows)
        self.current = Episode(start, trigger, onset_ts)
        self.seq = registry_len
        self.resolve()
        return EpisodeOpened(self.current.start, trigger)

    def resolve(self) -> None:
        """An alert can overtake the transactions it names: until a row stamped at or after
        the onset has arrived, the episode has no rows (the rows still coming in are older)."""
        ep = self.current
        if ep is None or ep.pending_ts is None:
            return
        pos = self.buffer.position_since(ep.pending_ts)
        if pos < self.buffer.seen:
            ep.start, ep.pending_ts = pos, None
        else:
            ep.start = self.buffer.seen

    def close(self, trigger: str = "manual") -> EpisodeClosed | None:
        if self.current is None:
            return None
        self.current = None
        return EpisodeClosed(trigger)
