"""Healing before an episode's labels arrive: when a label-free cycle is due, what it reads,
and what its result does.

A label-free cycle (:func:`shared.labelfree.label_free_cycle`) runs every ``every`` rows of
the episode once ``min_rows`` of them are in memory, on its newest rows (enough to hold
``label_free_frauds`` frauds at the training fraud rate: :class:`HealerConfig`). Its verdict
acts only when ``confirm`` cycles in a row agree: a candidate goes live after that many
accepted ones, and a label-free adapter that is live is reset to the last trusted adapter
(the one live when the episode opened) after that many diagnoses that cannot explain the
drift (``unexplained``), whose estimates disagree (``unstable``), or that find nothing
moved any more (``nothing``: upstream fixed what it corrected). Healing resumes when
the diagnoses agree again. Once ``min_labels`` labels of the episode have arrived, holding
``min_frauds`` frauds, labelled heals take over, starting from the live (label-free) adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.messages import Alert
from shared.messages.alerts import Detail

FAILS = ("unexplained", "unstable")


@dataclass(frozen=True)
class Diagnosed:
    """A label-free cycle's diagnosis changed its action (what ``drift-alerts`` hears)."""

    details: dict[str, Any]  # shared.labelfree.Diagnosis.details()
    version: int  # the live adapter when it was made
    accepted: bool  # the gate accepted the candidate it implied

    @property
    def action(self) -> str:
        return str(self.details.get("action", ""))

    def to_alert(self) -> Alert:
        d = self.details
        rates = d.get("fraud_rate", {})
        flat: dict[str, Detail] = {
            "reason": str(d.get("reason", "")),
            "rows": d.get("rows"),
            "live_version": self.version,
            "accepted": int(self.accepted),
            "fraud_rate_features": rates.get("features"),
            "fraud_rate_bbse": rates.get("bbse"),
            "flag_rate": d.get("flag_rate"),
            "flag_rate_raw": d.get("flag_rate_raw"),
            "flag_rate_reference": d.get("flag_rate_reference"),
            "offset": d.get("offset"),
            "shifted": "; ".join(
                f"{f} x{s['scale']:.3f} {s['shift']:+.3f}" for f, s in d.get("shifted", {}).items()
            ),
            "unexplained": "; ".join(f"{f} (z={z:.1f})" for f, z in d.get("unexplained", {}).items()),
        }
        em, training = rates.get("em"), rates.get("training")
        return Alert(
            "healer",
            "diagnosis",
            float(em) if em is not None else float("nan"),
            float(training or 0.0),
            self.action,
            details=flat,
        )


class BeforeLabels:
    """An episode's label-free verdicts so far (the healer decides with them)."""

    def __init__(self, unavailable: str | None) -> None:
        self.unavailable = unavailable  # why this bundle cannot heal without labels
        self.new_episode()

    def new_episode(self) -> None:
        self.since = 0  # episode rows since the last cycle
        self.streak: tuple[str, int] = ("", 0)  # (heal | fail | none, cycles in a row)
        self.last_action = ""
        self.live_version: int | None = None  # the label-free adapter live now, if any
        self.last: dict[str, Any] | None = None  # the newest diagnosis

    def count(self, kind: str) -> int:
        """Record one cycle's verdict; returns how many in a row said the same."""
        n = self.streak[1] + 1 if self.streak[0] == kind else 1
        self.streak = (kind, n)
        return n

    def diagnosed(self, details: dict[str, Any], version: int, accepted: bool) -> Diagnosed | None:
        """The diagnosis as an event when its action differs from the previous one."""
        self.last = details
        action = str(details.get("action", ""))
        if action == self.last_action:
            return None
        self.last_action = action
        return Diagnosed(details, version, accepted)
