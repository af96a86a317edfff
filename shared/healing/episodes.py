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
