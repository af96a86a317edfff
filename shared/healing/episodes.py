"""Drift episodes, decided from the detectors' summary alerts in one place.

An episode is open while any detector (FIDI, the category test, the conflict rate, the
frozen model's cost on arrived labels) is in drift: it opens on
the first ``drift`` summary alert and closes when the last alarmed detector has
``recovered``. The opening alert names the onset (the event time ``onset_ts`` of the first
drifted row, or ``onset_rows`` back); healing then uses only rows stamped from the onset on.

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

from shared.healing.events import EpisodeClosed, EpisodeOpened
from shared.healing.join import LabelJoin
from shared.messages import Alert

# detectors whose onset is a bound from above: the fraud-rate CUSUM names the row where its
# statistic last left zero, which for a small move in the posteriors (a concept switch)
# comes thousands of rows after the change. An episode one of them opened is dated back to
# the earliest onset a further detector names (the label windows' starts); one that FIDI's
# change point dated keeps it (a label window starts wherever its labels do, often before)
LATE_ONSETS = frozenset({"prior"})


@dataclass
class Episode:
    start: float  # event time (ms) of the first row of the episode (the onset)
    trigger: str  # the detector that opened it


class EpisodeTracker:
    """Which detectors are in drift, from their summary alerts (the monitor publishes state
    changes only, so a detector's last summary alert is its state)."""

    def __init__(self) -> None:
        self.alarmed: set[str] = set()

    def update(self, alert: Alert) -> Literal["open", "close"] | None:
        """``open`` when the first detector alarms, ``close`` when the last recovers."""
        if not alert.summary:
            return None  # per-feature alerts repeat what the summary alert says
        return self.set(alert.feature, alert.state)

    def set(self, detector: str, state: str) -> Literal["open", "close"] | None:
        """Detector ``detector`` is now in ``state`` (``drift``, ``recovered``)."""
        was = bool(self.alarmed)
        if state == "drift":
            self.alarmed.add(detector)
        elif state == "recovered":
            self.alarmed.discard(detector)
        if self.alarmed and not was:
            return "open"
        if was and not self.alarmed:
            return "close"
        return None


class Episodes:
    """The open episode, if any: when it began in event time and where its snapshots begin
    in the registry (``seq``, kept after it closes).

    >>> import numpy as np
    >>> from shared.messages import Alert
    >>> from shared.healing.featurelog import FeatureLog
    >>> join = LabelJoin(FeatureLog(None, 1, horizon_ms=1e6, budget_bytes=1 << 20), recent_rows=100)
    >>> ts = [float(i) for i in range(50)]   # event times
    >>> _ = join.add_transactions([f"t{i}" for i in range(50)], np.zeros((50, 1)), ts)
    >>> episodes = Episodes(join)
    >>> drift = Alert("fidi", "fidi", 1.5, 1.0, "drift", onset_rows=20, onset_ts=30.0)
    >>> episodes.on_alert(drift, registry_len=3)
    EpisodeOpened(start=30.0, trigger='fidi')
    >>> calm = Alert("fidi", "fidi", 0.2, 1.0, "recovered")
    >>> episodes.on_alert(calm, registry_len=9), episodes.seq
    (EpisodeClosed(trigger='fidi'), 3)
    >>> episodes.open(9, onset_rows=10)   # no event time named: ten rows back
    EpisodeOpened(start=40.0, trigger='manual')
    >>> episodes.on_detector("labels_residual", "drift", 9, onset_ts=25.0)  # a label window's start
    >>> episodes.current.start   # the opener's onset stands
    40.0
    >>> episodes = Episodes(join)
    >>> episodes.on_detector("prior", "drift", 9, onset_rows=5)   # the CUSUM: a late bound
    EpisodeOpened(start=45.0, trigger='prior')
    >>> episodes.on_detector("labels_residual", "drift", 9, onset_ts=25.0)
    >>> episodes.current.start   # dated back
    25.0
    """

    def __init__(self, join: LabelJoin, default_onset: int = 1000) -> None:
        self.join, self.default_onset = join, default_onset
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

    def on_detector(
        self,
        name: str,
        state: str,
        registry_len: int,
        onset_ts: float | None = None,
        onset_rows: int | None = None,
    ) -> EpisodeOpened | EpisodeClosed | None:
        """One of the healer's own detectors (``labels_loss``: :mod:`~shared.healing.label_drift`;
        ``prior``: :mod:`~shared.healing.prior_drift`) changed state: it counts as one more
        detector."""
        change = self.alarms.set(name, state)
        if change == "close":
            return self.close(trigger=name)
        if state == "drift" and self.current is not None:
            if self.current.trigger in LATE_ONSETS and (onset_ts is not None or onset_rows):
                self.current.start = min(self.current.start, self._start(onset_rows or 0, onset_ts))
            return None
        if change == "open":
            return self.open(registry_len, onset_rows or self.default_onset, onset_ts, trigger=name)
        return None

    def open(
        self, registry_len: int, onset_rows: int = 0, onset_ts: float | None = None, trigger: str = "manual"
    ) -> EpisodeOpened | None:
        """An episode that began at event time ``onset_ts`` (epoch ms; other consumers'
        positions differ from ours, timestamps do not), else ``onset_rows`` transactions
        ago. None if one is already open."""
        if self.current is not None:
            return None
        self.current = Episode(self._start(onset_rows, onset_ts), trigger)
        self.seq = registry_len
        return EpisodeOpened(self.current.start, trigger)

    def _start(self, onset_rows: int, onset_ts: float | None) -> float:
        """The event time an onset names: ``onset_ts``, else ``onset_rows`` transactions back."""
        return float(onset_ts if onset_ts is not None else self.join.ts_back(onset_rows))

    def close(self, trigger: str = "manual") -> EpisodeClosed | None:
        if self.current is None:
            return None
        self.current = None
        return EpisodeClosed(trigger)
