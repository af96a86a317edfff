"""The healer: one policy for the offline runner and the healer service.

It joins late labels to their transactions (:class:`~shared.healing.join.LabelJoin`: the
newest rows in memory, the rest in the feature log on disk for the label horizon) and
opens a drift *episode* on the detectors' alerts (:mod:`~shared.healing.episodes`). When
a heal is due and what it trains on is the schedule's (:mod:`~shared.healing.schedule`):
label-free cycles until the episode's labels arrive (:mod:`~shared.healing.before_labels`),
then labelled ones, each once the episode's labels have grown enough. A finished job is
recorded by the adapter ledger (:mod:`~shared.healing.ledger`: a ``pre`` and a ``post``
snapshot in the registry) and, when its gate accepted it, becomes the live adapter.
Arriving labels pass the label intake first (:mod:`~shared.healing.intake`: the label
guard's chunks); then the live check (:mod:`~shared.healing.live_check`) measures the live
adapter's quality and its cost against the shadow's on the same transactions, either of
which can roll back. Jobs run wherever
the :class:`~shared.healing.worker.HealWorker` runs them (inline offline, in a child
process in the service); ``prepare`` and ``conclude`` bracket them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shared.bundle import Bundle
from shared.healing.before_labels import FAILS, BeforeLabels, Diagnosed
from shared.healing.config import HealerConfig as HealerConfig  # re-exported: callers import it here
from shared.healing.cycle import HealBatch, HealResult
from shared.healing.episodes import Episode, Episodes
from shared.healing.events import (
    Degraded,
    EpisodeClosed,
    EpisodeOpened,
    HealerEvent,
    HealJob,
    HealOutcome,
    RolledBack,
)
from shared.healing.featurelog import FeatureLog
from shared.healing.intake import LabelIntake, Withdrawn
from shared.healing.jobs import JobRunner
from shared.healing.join import Joined, LabelJoin
from shared.healing.ledger import AdapterLedger
from shared.healing.live_check import LiveCheck
from shared.healing.own_watch import Change, OwnWatch
from shared.healing.schedule import HealSchedule
from shared.healing.types import HealKind
from shared.messages import Alert
from shared.model import AdapterState
from shared.registry import QualityWatch, Registry, Snapshot


class Healer:
    def __init__(
        self,
        bundle: Bundle,
        registry: Registry,
        config: HealerConfig | None = None,
        log: FeatureLog | None = None,
    ) -> None:
        """``log`` None: a feature log in memory (offline runs, tests)."""
        self.bundle, self.registry = bundle, registry
        self.cfg = cfg = config or HealerConfig()
        implies = cfg.imply_ms is not None
        log = log or FeatureLog(
            None, len(bundle.features), cfg.label_horizon_ms, cfg.log_budget_bytes, by_time=implies
        )
        self.join = LabelJoin(log, cfg.recent_rows, settle_ms=cfg.settle_ms, imply_ms=cfg.imply_ms)
        self.intake = LabelIntake(self.join, cfg.label_guard, cfg.quality_rows)
        self.episodes = Episodes(self.join, cfg.default_onset)
        self.events: list[HealerEvent | Diagnosed] = []
        self.runner = JobRunner(bundle, cfg.heal, cfg.before_labels)
        self.detectors = OwnWatch(bundle, cfg.watch, self.runner.ref)
        self.before = BeforeLabels(self.runner.unavailable)
        prior0 = self.runner.ref.prior0 if self.runner.ref is not None else None
        self.schedule = HealSchedule(
            cfg.schedule,
            bundle,
            self.join,
            self.intake.guard,
            self.before,
            prior0,
            label_free=cfg.label_free,
            recent_rows=cfg.recent_rows,
        )
        self._new_episode_state()
        self.n_heals = registry.n_heals
        self.labels_at_first_heal: int | None = None
        self._pending_rollback: tuple[Snapshot, str] | None = None
        self.ledger = AdapterLedger(registry, bundle.adapter_state)  # after a restart: the last live adapter

    def _new_episode_state(self) -> None:
        """What each episode judges afresh: the live check (quality, the shadow, a pause)."""
        cfg = self.cfg
        self.check = LiveCheck(cfg.rollback, cfg.shadow_guard, self.bundle.costs, cfg.quality_rows)
        self.before.new_episode()

    @property
    def episode(self) -> Episode | None:
        """The open drift episode (None outside one)."""
        return self.episodes.current

    @property
    def episode_seq(self) -> int:
        """Registry length when the last episode opened: its snapshots come after."""
        return self.episodes.seq

    @property
    def watch(self) -> QualityWatch:
        return self.check.watch

    @property
    def live(self) -> Snapshot:
        return self.ledger.live

    @property
    def version(self) -> int:
        return self.ledger.version

    @property
    def adapter(self) -> AdapterState:
        return self.ledger.adapter

    @property
    def labels_quarantined(self) -> int:
        return self.intake.quarantined

    # -- what the stream shows
    def add_transactions(self, ids: Sequence[str], X: np.ndarray, ts: Sequence[float]) -> None:
        """Transactions with their event times (ms); a row a rule fires on is always logged.
        An empty batch (every record of it dead-lettered) changes nothing."""
        if len(ids) == 0:
            return
        X = np.asarray(X, dtype=np.float32)
        fired = self.bundle.rules.fires(X)  # (N, rules)
        flagged: list[bool] = [bool(f) for f in np.asarray(fired.any(axis=1))]
        early = self.join.add_transactions(ids, X, ts, flagged)
        if self.episode is not None:
            self.before.since += len(ids)
        self._changed(self.detectors.on_rows(X))
        self._judge(early)

    def add_decisions(
        self,
        ids: Sequence[str],
        fraud: Sequence[bool],
        versions: Sequence[int],
        shadow_fraud: Sequence[bool] | None = None,
    ) -> None:
        shadow = shadow_fraud if shadow_fraud is not None else [False] * len(ids)
        self.join.add_decisions(ids, fraud, versions, shadow)

    def add_labels(
        self,
        ids: Sequence[str],
        labels: Sequence[float],
        ts: Sequence[float] | None = None,
        sources: Sequence[str | None] | None = None,
    ) -> None:
        """Labels as they arrive (``ts``: their own event time, for the delay statistics;
        ``sources``: how each was drawn, counted by the join).
        Those that found their transaction are judged: with the label guard on they are held
        in chunks of ``quality_rows`` and reach the training set (and the quality
        measurements) only once their chunk is judged trustworthy."""
        self._judge(self.join.add_labels(ids, labels, ts, sources))

    def _judge(self, joined: Joined) -> None:
        if not len(joined):
            return
        if self.episode is not None:
            self.schedule.since_heal += int((joined.rows["ts"] >= self.episode.start).sum())
        for step in self.intake.add(joined, lambda: len(self.registry)):
            if isinstance(step, Joined):
                self._measure(step)
            elif isinstance(step, Withdrawn):
                self._withdrawn(step)
            else:
                self.events.append(step)

    def _withdrawn(self, w: Withdrawn) -> None:
        """Labels turned out suspect: if an adapter healed since the chunk before them was
        released is live, queue a rollback to the best post-heal snapshot made before it."""
        if self.live.seq < w.since or self.live.kind == "initial":
            return  # the live adapter was healed before any suspect label arrived
        ledger = self.ledger
        target = ledger.best_post_heal(self.episode_seq, before=w.since) or ledger.live_before(w.since)
        if target.version != self.version:
            self._pending_rollback = (target, w.reason)

    def _measure(self, joined: Joined) -> None:
        """Trusted labels (now in the training set) feed the healer's own detectors and the
        live check of the adapter live now."""
        self._changed(self.detectors.on_labels(joined.labels, joined.rows))
        self.check.add(joined, self.version)

    def _changed(self, changes: list[Change]) -> None:
        """The healer's own detectors changed state: each counts as one more detector."""
        n = len(self.registry)
        for c in changes:
            self._episode_event(self.episodes.on_detector(c.detector, c.state, n, c.onset_ts, c.onset_rows))

    def drain_events(self) -> list[HealerEvent | Diagnosed]:
        """What happened since the last call: episodes, label verdicts."""
        out, self.events = self.events, []
        return out

    # -- episodes (decided in shared.healing.episodes)
    def on_alert(self, alert: Alert) -> None:
        """A detector's alert: episodes open on the first detector in drift and close when the
        last one has recovered."""
        self._episode_event(self.episodes.on_alert(alert, len(self.registry)))

    def open_episode(
        self, onset_rows: int = 0, onset_ts: float | None = None, trigger: str = "manual"
    ) -> bool:
        """Open an episode by hand (tests, the seed protocol's callers); False if one is open."""
        return self._episode_event(self.episodes.open(len(self.registry), onset_rows, onset_ts, trigger))

    def close_episode(self, trigger: str = "manual") -> None:
        self._episode_event(self.episodes.close(trigger))

    def _episode_event(self, event: EpisodeOpened | EpisodeClosed | None) -> bool:
        if isinstance(event, EpisodeOpened):
            self._new_episode_state()
            self.ledger.trusted = self.ledger.live
        if event is not None:
            self.events.append(event)
        if isinstance(event, EpisodeClosed) and self.before.live_version == self.version:
            why = "the drift is over: its label-free adapter is reset"  # a calibration for a drift gone
            trusted = self.ledger.trusted
            self.events.append(self._roll_back(trusted.adapter, trusted.version, why))
            self.before.live_version = None
        return event is not None

    # -- healing
    def ready(self) -> str | None:
        """Why no heal can start now, or None when one can."""
        return self.schedule.kind(self.episode, self.check.paused)[1]

    def due(self) -> bool:
        """A heal of the kind that can start now is due (:class:`HealSchedule`)."""
        return self.schedule.due(self.schedule.kind(self.episode, self.check.paused)[0], self.episode)

    def prepare(self) -> HealJob | None:
        """A heal job on the episode's rows, if one can start now."""
        kind = self.schedule.kind(self.episode, self.check.paused)[0]
        if kind is None or self.episode is None:
            return None
        return self.job_for(self.schedule.batch(self.episode, kind), kind)

    def job_for(self, batch: HealBatch, kind: HealKind = HealKind.LABELS) -> HealJob:
        """A heal job on ``batch`` from the live adapter (the research protocol heals on its batch)."""
        self.n_heals += 1
        return HealJob(self.n_heals, self.bundle.new_model(self.adapter), batch, self.version, kind)

    def run(self, job: HealJob) -> HealResult:
        return self.runner(job)

    def finish(
        self,
        job: HealJob,
        result: HealResult,
        pre_metrics: dict[str, float] | None = None,
        post_metrics: dict[str, float] | None = None,
    ) -> HealOutcome:
        """Record the job's snapshots; an accepted candidate goes live, unless the adapter it
        started from was rolled back while it ran (then it is recorded as superseded). The
        snapshots carry ``accuracy`` and ``f1`` from the held-out labels unless given."""
        pre_m: dict[str, float] = {}
        post_m: dict[str, float] = dict(result.metrics)
        if result.evidence is not None and (h := result.evidence.held_out) is not None:
            # both judged on the same held-out rows
            pre_m = {"accuracy": h.accuracy_before, "f1": h.f1_before}
            post_m.update(accuracy=h.accuracy_after, f1=h.f1_after)
        pre_metrics = pre_metrics if pre_metrics is not None else pre_m
        post_metrics = {**post_m, **(post_metrics or {})}
        rec = self.ledger.record_heal(job, result, pre_metrics, post_metrics)
        if job.kind is HealKind.LABELS and result.evidence is not None and job.version == self.version:
            self.check.rescored(result.evidence.live, self.version)  # still live: judged afresh
        if rec.result.accepted:
            if self.labels_at_first_heal is None:
                self.labels_at_first_heal = 0 if result.evidence is None else result.evidence.n_labelled
            self.check.healed(rec.post.version)
        return HealOutcome(job, rec.result, rec.pre, rec.post)

    def conclude(self, job: HealJob, result: HealResult) -> list[HealerEvent | Diagnosed]:
        """What a finished job does: a labelled one is recorded (``finish``); a label-free
        one reports its diagnosis when it changed, and acts once ``label_free_confirm``
        cycles in a row agree: its candidate goes live, or a label-free adapter that can no
        longer be explained is reset to the last trusted one."""
        if job.kind is not HealKind.LABEL_FREE:
            return [self.finish(job, result)]
        details = result.diagnosis or {}
        out: list[HealerEvent | Diagnosed] = []
        if (d := self.before.diagnosed(details, self.version, result.accepted)) is not None:
            out.append(d)
        action = str(details.get("action", ""))
        kind = "heal" if result.accepted else ("fail" if action in FAILS else action or "none")
        n, lf_live = self.before.count(kind), self.before.live_version == self.version
        if kind == "heal" and n >= self.cfg.schedule.label_free_confirm and job.version == self.version:
            outcome = self.finish(job, result)
            self.before.live_version = outcome.post.version
            out.append(outcome)
        elif kind in ("fail", "nothing") and n >= self.cfg.schedule.label_free_confirm and lf_live:
            if kind == "nothing":  # upstream fixed it: a calibration now moves correct rows
                why = "label-free healing reset: the features it corrected are back at the reference"
            else:
                why = f"label-free healing reset: {details.get('reason', action)}"
            trusted = self.ledger.trusted
            out.append(self._roll_back(trusted.adapter, trusted.version, why))
            self.before.live_version = None
        return out

    # -- rollback
    def check_rollback(self) -> RolledBack | Degraded | None:
        """A rollback when the labels an adapter was healed on turned out suspect, when
        healing loses to the shadow, or when live quality degraded; ``Degraded`` when quality
        degraded but the live adapter is already the episode's best."""
        if self._pending_rollback is not None:
            target, why = self._pending_rollback
            self._pending_rollback = None
            return self._roll_back(target.adapter, target.version, why)
        verdict = self.check.verdict(self.version)
        if verdict is None:
            return None
        if verdict.to_bundle:
            if self.version == 0:
                return Degraded(verdict.reason)  # already on the shadow's adapter
            return self._roll_back(self.bundle.adapter_state, 0, verdict.reason)
        best = self.ledger.best_post_heal(self.episode_seq)
        if best is None or best.version == self.version:
            return Degraded(verdict.reason)
        return self._roll_back(best.adapter, best.version, verdict.reason)

    def _roll_back(self, adapter: AdapterState, version: int, reason: str) -> RolledBack:
        from_version = self.version
        snap = self.ledger.roll_back(adapter, version, reason)
        self.watch.reset_window()
        return RolledBack(snap, from_version, reason)

    def adopt(self, snapshot: Snapshot) -> bool:
        """A snapshot written by someone else (``selfheal registry rollback``): a manual one
        becomes live. True if it changed the live adapter."""
        return self.ledger.adopt(snapshot)
