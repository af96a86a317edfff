"""What the healer does and notices, as typed values: the healer service publishes and logs
them, the offline runner records them (``events.json``), and both act on the same ones.

``HealJob`` is a heal cycle about to run; everything else is an event drained from the
healer (:meth:`shared.healing.healer.Healer.drain_events`) or returned by its worker.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.healing.cycle import HealBatch, HealResult
from shared.healing.types import HealKind
from shared.messages import Alert
from shared.messages.alerts import Detail
from shared.model import SelfHealingModel
from shared.registry import Snapshot


@dataclass(frozen=True)
class HealJob:
    number: int
    model: SelfHealingModel  # its own copy, with the adapter live when the job was prepared
    batch: HealBatch
    version: int  # the live version it starts from
    kind: HealKind = HealKind.LABELS


@dataclass(frozen=True)
class HealOutcome:
    """A heal cycle finished: its ``pre`` and ``post`` snapshots are in the registry, and an
    accepted candidate is live."""

    job: HealJob
    result: HealResult
    pre: Snapshot
    post: Snapshot

    @property
    def accepted(self) -> bool:
        return self.result.accepted


@dataclass(frozen=True)
class EpisodeOpened:
    start: float  # event time (ms) of the episode's first row (the onset)
    trigger: str  # the detector whose alert opened it: fidi | conflicts | (a test: manual)


@dataclass(frozen=True)
class EpisodeClosed:
    trigger: str  # the detector whose recovery closed it (every detector is calm again)


@dataclass(frozen=True)
class RolledBack:
    snapshot: Snapshot  # the rollback snapshot, now live
    from_version: int
    reason: str

    def to_alert(self) -> Alert:
        s = self.snapshot
        details: dict[str, Detail] = {
            "from_version": self.from_version,
            "to_version": s.version,
            "snapshot": s.id,
            "reason": self.reason,
        }
        return Alert("healer", "adapter", s.version, 0, "rollback", details=details)


@dataclass(frozen=True)
class Degraded:
    """Live quality degraded (or healing lost to the shadow), but the live adapter is
    already the one a rollback would restore."""

    reason: str


@dataclass(frozen=True)
class LabelsJudged:
    """The label feed turned suspect (a chunk disagrees with the shadow beyond chance), is
    trusted again, or its long disagreement is read as a concept change."""

    state: str  # suspect | trusted | concept
    kappa: float
    threshold: float
    reason: str
    quarantined: int = 0  # labels set aside in this chunk

    def to_alert(self) -> Alert:
        details: dict[str, Detail] = {"reason": self.reason}
        if self.quarantined:
            details["quarantined"] = self.quarantined
        return Alert("healer", "labels", self.kappa, self.threshold, self.state, details=details)


HealerEvent = EpisodeOpened | EpisodeClosed | HealOutcome | RolledBack | Degraded | LabelsJudged
