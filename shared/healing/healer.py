"""The healer: one policy for the offline runner and the healer service.

It joins late labels to their transactions (:class:`~shared.healing.join.LabelJoin`: the
newest rows in memory, the rest in the feature log on disk for the label horizon) and
opens a drift *episode* on the detectors' alerts (:mod:`~shared.healing.episodes`). When
a heal is due and what it trains on is the schedule's (:mod:`~shared.healing.schedule`):
label-free cycles until the episode's labels arrive (:mod:`~shared.healing.before_labels`),
then labelled ones, each once the episode's labels have grown enough. A finished job is
recorded by the adapter ledger (:mod:`~shared.healing.ledger`: a ``pre`` and a ``post``
snapshot in the registry) and, when its gate accepted it, becomes the live adapter.
Arriving labels pass the label guard first (:mod:`~shared.healing.label_guard`); then
they measure the healed adapters' live quality (:mod:`~shared.healing.quality`) and
their cost against the shadow's on the same transactions
(:mod:`~shared.healing.shadow_guard`), either of which can roll back. Jobs run wherever
the :class:`~shared.healing.worker.HealWorker` runs them (inline offline, in a child
process in the service); ``prepare`` and ``conclude`` bracket them.
"""

from __future__ import annotations

from collections import deque
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
    LabelsJudged,
    RolledBack,
)
from shared.healing.featurelog import DECIDED, FRAUD, SHADOW_FRAUD, FeatureLog
from shared.healing.jobs import JobRunner
from shared.healing.join import Joined, LabelJoin
from shared.healing.label_guard import HeldLabel, Judged, LabelGuard
from shared.healing.ledger import AdapterLedger
from shared.healing.own_watch import Change, OwnWatch
from shared.healing.quality import LiveQuality
from shared.healing.schedule import HealSchedule
from shared.healing.shadow_guard import ShadowGuard
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
        log = log or FeatureLog(None, len(bundle.features), cfg.label_horizon_ms, cfg.log_budget_bytes)
        self.join = LabelJoin(log, cfg.recent_rows, settle_ms=cfg.settle_ms)
        lg = cfg.label_guard
        self._suspects: deque[Joined] = deque(maxlen=lg.concept_chunks or 1)  # quarantined chunks
        self.guard = LabelGuard(
            cfg.quality_rows, lg.kappa_min, lg.min_known, lg.resume_chunks, lg.concept_chunks
        )
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
            self.guard,
            self.before,
            prior0,
            label_free=cfg.label_free,
            recent_rows=cfg.recent_rows,
        )
        self._new_episode_state()
        self.n_heals = registry.n_heals
        self.labels_at_first_heal: int | None = None
        # the ids of the last chunk of labels released into the buffer, and the registry's length then
        self._last_release: tuple[list[str], int] = ([], 0)
        self._pending_rollback: tuple[Snapshot, str] | None = None
        self.ledger = AdapterLedger(registry, bundle.adapter_state)  # after a restart: the last live adapter

    def _new_episode_state(self) -> None:
        """What each episode judges afresh: live quality, the shadow guard, a pause."""
        cfg = self.cfg
        self.quality = LiveQuality(cfg.rollback, self.bundle.costs, cfg.quality_rows)
        sg = cfg.shadow_guard
        self.shadow = ShadowGuard(sg.rows, sg.min_rows, sg.z)
        self.baseline_version = -1  # first version healed in the episode: decisions from it on are judged
        self.paused: str | None = None  # why healing stopped for the rest of the episode
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
        return self.quality.watch

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
        return self.guard.quarantined

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
        if not self.cfg.label_guard.on:
            self._release(joined)
            return
        shadow: dict[str, bool | None] = {}
        held = []
        for tx_id, y, row in zip(joined.ids, joined.labels.tolist(), joined.rows, strict=True):
            held.append(HeldLabel(tx_id, y, row))
            shadow[tx_id] = bool(row["flags"] & SHADOW_FRAUD) if row["flags"] & DECIDED else None
        for judged in self.guard.add(held, shadow.get):
            rows = self._joined(judged.labels)
            if judged.suspect:
                self._suspects.append(rows)  # kept: a long enough hold may turn out a concept change
                self._quarantine(judged)
                continue
            if judged.trusted_again:  # on a concept change, the kept chunks first
                state = "concept" if judged.concept else "trusted"
                self.events.append(
                    LabelsJudged(state, self.guard.kappa, self.cfg.label_guard.kappa_min, judged.reason)
                )
                for kept in self._suspects if judged.concept else ():
                    self._release(kept)
                self._suspects.clear()
            self._release(rows)

    def _joined(self, labels: list[HeldLabel]) -> Joined:
        rows = np.array([h.row for h in labels], dtype=self.join.log.dtype)
        return Joined([h.id for h in labels], np.array([h.label for h in labels], np.float32), rows)

    def _quarantine(self, judged: Judged) -> None:
        """A suspect chunk never reaches the training set. On the first one: withdraw the
        chunk released before it (it may hold the burst's first labels) and, if an adapter
        healed since then is live, queue a rollback to the best post-heal snapshot made
        before it."""
        kappa_min = self.cfg.label_guard.kappa_min
        self.events.append(
            LabelsJudged("suspect", judged.kappa, kappa_min, judged.reason, len(judged.labels))
        )
        if not judged.first_suspect:
            return
        prev_ids, seq0 = self._last_release
        self.join.forget(prev_ids)
        if self.live.seq < seq0 or self.live.kind == "initial":
            return  # the live adapter was healed before any suspect label arrived
        target = self.ledger.best_post_heal(self.episode_seq, before=seq0) or self.ledger.live_before(seq0)
        if target.version != self.version:
            self._pending_rollback = (target, judged.reason)

    def _release(self, joined: Joined) -> None:
        """Trusted labels: into the training set; into the shadow guard whenever an adapter
        other than the bundle's is live; and, once the episode has healed, into the live
        quality. Both judge the decisions of the adapter live now only (labels of decisions
        by adapters since replaced say nothing about it)."""
        self.join.accept(joined)
        self._last_release = (joined.ids, len(self.registry))
        self._changed(self.detectors.on_labels(joined.labels, joined.rows))
        judge_quality = self.baseline_version >= 1  # live quality: from the episode's first heal on
        if not judge_quality and self.version == 0:
            return  # the bundle's adapter, and no heal to measure: nothing to judge
        costs = self.bundle.costs
        for y, row in zip(joined.labels.tolist(), joined.rows, strict=True):
            flags, version = int(row["flags"]), int(row["version"])
            if not flags & DECIDED or version != self.version:
                continue
            fraud, shadow = bool(flags & FRAUD), bool(flags & SHADOW_FRAUD)
            if judge_quality:
                self.quality.add(y, fraud)
            # the shadow guard judges any live adapter but the bundle's, whatever made it
            # (a heal of this episode, one of an earlier episode, one restored from disk)
            if version > 0:
                self.shadow.add(float(costs.per_row(y, fraud) - costs.per_row(y, shadow)), version)

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
        return self.schedule.kind(self.episode, self.paused)[1]

    def due(self) -> bool:
        """A heal of the kind that can start now is due (:class:`HealSchedule`)."""
        return self.schedule.due(self.schedule.kind(self.episode, self.paused)[0], self.episode)

    def prepare(self) -> HealJob | None:
        """A heal job on the episode's rows, if one can start now."""
        kind = self.schedule.kind(self.episode, self.paused)[0]
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
        if rec.result.accepted:
            if self.labels_at_first_heal is None:
                self.labels_at_first_heal = 0 if result.evidence is None else result.evidence.n_labelled
            if self.baseline_version < 0:
                self.baseline_version = rec.post.version
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

    def heal(self) -> HealOutcome | None:
        """prepare, run and finish in one call (tests)."""
        job = self.prepare()
        return None if job is None else self.finish(job, self.run(job))

    # -- rollback
    def check_rollback(self) -> RolledBack | Degraded | None:
        """A rollback when the labels an adapter was healed on turned out suspect, when
        healing loses to the shadow, or when live quality degraded; ``Degraded`` when quality
        degraded but the live adapter is already the episode's best."""
        if self._pending_rollback is not None:
            target, why = self._pending_rollback
            self._pending_rollback = None
            return self._roll_back(target.adapter, target.version, why)
        loses = self.shadow.verdict(self.version) if self.cfg.shadow_guard.on else None
        if loses is not None:
            self.shadow.clear()
            self.paused = f"healing paused for this episode: {loses}"
            self.watch.reset_window()
            if self.version == 0:
                return Degraded(loses)  # already on the shadow's adapter
            return self._roll_back(self.bundle.adapter_state, 0, loses)
        reason = self.watch.degraded
        if reason is None or self.paused is not None:
            return None  # paused: the guard chose the bundle's adapter; no healed one comes back
        self.watch.reset_window()
        best = self.ledger.best_post_heal(self.episode_seq)
        if best is None or best.version == self.version:
            return Degraded(reason)
        return self._roll_back(best.adapter, best.version, reason)

    def _roll_back(self, adapter: AdapterState, version: int, reason: str) -> RolledBack:
        from_version = self.version
        snap = self.ledger.roll_back(adapter, version, reason)
        self.watch.reset_window()
        return RolledBack(snap, from_version, reason)

    def adopt(self, snapshot: Snapshot) -> bool:
        """A snapshot written by someone else (``selfheal registry rollback``): a manual one
        becomes live. True if it changed the live adapter."""
        return self.ledger.adopt(snapshot)
