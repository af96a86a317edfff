"""The healer: one policy for the offline runner and the healer service.

It keeps the recent transactions and joins late labels to them (:class:`LabelJoinBuffer`),
opens a drift *episode* on the detectors' alerts (:mod:`~shared.healing.episodes`), and
then prepares heal jobs on the episode's rows only, every ``heal_every`` new transactions
or labels, waiting for ``min_labels`` of their labels unless label-free. A finished job is
recorded in the registry (a ``pre`` and a ``post`` snapshot) and, when the gate accepted
it, becomes the live adapter. Arriving labels pass the label guard first
(:mod:`~shared.healing.label_guard`); then they measure the healed adapters' live quality
(:mod:`~shared.healing.quality`) and their cost against the shadow's on the same
transactions (:mod:`~shared.healing.shadow_guard`), either of which can roll back.

The heal cycle itself (:func:`~shared.healing.cycle.heal_cycle`) runs wherever the
:class:`~shared.healing.worker.HealWorker` runs it: inline offline, on a worker thread in
the service. ``prepare`` and ``finish`` bracket it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from shared.bundle import Bundle
from shared.healing.buffer import LabelJoinBuffer
from shared.healing.cycle import HealBatch, HealConfig, HealResult, heal_cycle
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
from shared.healing.label_guard import Judged, LabelGuard
from shared.healing.quality import LiveQuality
from shared.healing.shadow_guard import ShadowGuard
from shared.healing.verdicts import VerdictMemory
from shared.messages import Alert
from shared.model import AdapterState
from shared.registry import QualityWatch, Registry, RollbackPolicy, Snapshot

LIVE_KINDS = ("initial", "rollback", "manual")


@dataclass(frozen=True)
class HealerConfig:
    buffer_rows: int = 2000  # recent transactions kept for healing
    min_labels: int = 100  # arrived labels from the episode needed before a labelled heal
    label_free: bool = False  # heal on rules alone, without waiting for labels
    heal_every: int = 100  # new transactions or labels between heal cycles during an episode
    default_onset: int = 1000  # rows back an episode starts when its alert names no onset
    quality_rows: int = 100  # arrived labels per live-quality measurement (and per label-guard chunk)
    decisions_kept: int = 50_000  # decisions remembered to judge arriving labels
    heal: HealConfig = field(default_factory=HealConfig)
    rollback: RollbackPolicy = field(default_factory=RollbackPolicy)
    shadow_guard: bool = True  # roll back to the bundle's adapter when healing loses to it
    shadow_rows: int = 1000  # recent healed decisions (with labels) compared with the shadow's
    shadow_min_rows: int = 300  # fewer than this: no verdict
    shadow_z: float = 2.0  # paired z of (healed cost - shadow cost) that means "healing hurts"
    label_guard: bool = True  # hold labels in chunks of quality_rows until judged (poisoned bursts)
    label_kappa_min: float = -0.05  # the frozen shadow's agreement with a chunk's labels below this: suspect
    label_guard_min: int = 50  # labels with a known shadow verdict needed to judge a chunk
    label_resume_chunks: int = 2  # clean chunks after a suspect one before healing resumes


class Healer:
    def __init__(self, bundle: Bundle, registry: Registry, config: HealerConfig | None = None) -> None:
        self.bundle, self.registry = bundle, registry
        self.cfg = cfg = config or HealerConfig()
        self.buffer = LabelJoinBuffer(cfg.buffer_rows, len(bundle.features))
        self.verdicts = VerdictMemory(cfg.decisions_kept)
        self.guard = LabelGuard(
            cfg.quality_rows, cfg.label_kappa_min, cfg.label_guard_min, cfg.label_resume_chunks
        )
        self.episodes = Episodes(self.buffer, cfg.default_onset)
        self.events: list[HealerEvent] = []
        self._new_episode_state()
        self.n_heals = registry.n_heals
        self.labels_at_first_heal: int | None = None
        self._since_heal = 0  # transactions and labels since the last heal started
        # the ids of the last chunk of labels released into the buffer, and the registry's length then
        self._last_release: tuple[list[str], int] = ([], 0)
        self._pending_rollback: tuple[Snapshot, str] | None = None
        if len(registry) == 0:
            registry.record("initial", bundle.adapter_state, version=0, note="adapter as trained")
        self.live = self._live_before(len(registry))  # after a restart: the adapter that went live last

    def _new_episode_state(self) -> None:
        """What each episode judges afresh: live quality, the shadow guard, a pause."""
        cfg = self.cfg
        self.quality = LiveQuality(cfg.rollback, self.bundle.costs, cfg.quality_rows)
        self.shadow = ShadowGuard(cfg.shadow_rows, cfg.shadow_min_rows, cfg.shadow_z)
        self.baseline_version = -1  # first version healed in the episode: decisions from it on are judged
        self.paused: str | None = None  # why healing stopped for the rest of the episode

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
    def version(self) -> int:
        return self.live.version

    @property
    def adapter(self) -> AdapterState:
        return self.live.adapter

    @property
    def labels_quarantined(self) -> int:
        return self.guard.quarantined

    # -- what the stream shows
    def add_transactions(self, ids: Sequence[str], X: np.ndarray, ts: Sequence[float] | None = None) -> None:
        self.buffer.add_transactions(ids, X, ts)
        self._since_heal += len(ids)

    def add_decisions(
        self,
        ids: Sequence[str],
        fraud: Sequence[bool],
        versions: Sequence[int],
        shadow_fraud: Sequence[bool] | None = None,
    ) -> None:
        self.verdicts.add(ids, fraud, versions, shadow_fraud)

    def add_labels(self, ids: Sequence[str], labels: Sequence[float]) -> None:
        """Labels as they arrive. With the label guard on they are held in chunks of
        ``quality_rows`` and reach the buffer (and the quality measurements) only once their
        chunk is judged trustworthy."""
        self._since_heal += len(ids)
        rows = [(i, float(y)) for i, y in zip(ids, labels, strict=True)]
        if not self.cfg.label_guard:
            self._release(rows)
            return
        for judged in self.guard.add(rows, self._shadow_verdict):
            if judged.suspect:
                self._quarantine(judged)
            else:
                if judged.trusted_again:
                    self.events.append(
                        LabelsJudged("trusted", self.guard.kappa, self.cfg.label_kappa_min, judged.reason)
                    )
                self._release(judged.labels)

    def _shadow_verdict(self, tx_id: str) -> bool | None:
        v = self.verdicts.get(tx_id)
        return None if v is None else v.shadow_fraud

    def _quarantine(self, judged: Judged) -> None:
        """A suspect chunk never reaches the buffer. On the first one: withdraw the chunk
        released before it (it may hold the burst's first labels) and, if an adapter healed
        since then is live, queue a rollback to the best post-heal snapshot made before it."""
        kappa_min = self.cfg.label_kappa_min
        self.events.append(
            LabelsJudged("suspect", judged.kappa, kappa_min, judged.reason, len(judged.labels))
        )
        if not judged.first_suspect:
            return
        prev_ids, seq0 = self._last_release
        self.buffer.forget_labels(prev_ids)
        if self.live.seq < seq0 or self.live.kind == "initial":
            return  # the live adapter was healed before any suspect label arrived
        before = [s for s in self.registry.post_heal(self.episode_seq) if s.seq < seq0 and "f1" in s.metrics]
        target = max(reversed(before), key=lambda s: s.metrics["f1"]) if before else self._live_before(seq0)
        if target.version != self.version:
            self._pending_rollback = (target, judged.reason)

    def _live_before(self, seq: int) -> Snapshot:
        """The adapter that was live just before registry position ``seq``."""
        live = [
            s
            for s in self.registry.snapshots()[:seq]
            if s.kind in LIVE_KINDS or (s.kind == "post" and s.accepted)
        ]
        return live[-1]

    def _release(self, rows: list[tuple[str, float]]) -> None:
        """Trusted labels: into the buffer; and, once the episode has healed, into the live
        quality and the shadow guard for the healed adapters' decisions."""
        ids = [i for i, _ in rows]
        self.buffer.add_labels(ids, [y for _, y in rows])
        self._last_release = (ids, len(self.registry))
        if self.baseline_version < 1:
            return
        costs = self.bundle.costs
        for tx_id, y in rows:
            v = self.verdicts.get(tx_id)
            if v is not None and v.version >= self.baseline_version:
                self.quality.add(y, v.fraud)
                if v.shadow_fraud is not None and v.version > 0:
                    self.shadow.add(float(costs.per_row(y, v.fraud) - costs.per_row(y, v.shadow_fraud)))

    def drain_events(self) -> list[HealerEvent]:
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
        if event is not None:
            self.events.append(event)
        return event is not None

    # -- healing
    def ready(self) -> str | None:
        """Why no heal can start now, or None when one can."""
        if self.episode is None:
            return "no drift episode"
        self.episodes.resolve()
        if self.paused is not None:
            return self.paused
        if self.guard.hold is not None:
            return self.guard.hold
        if self.cfg.label_free:
            return None
        have = self.buffer.snapshot(since=self.episode.start).n_labelled
        if have >= self.cfg.min_labels:
            return None
        held = f"; {len(self.guard.held)} more being checked" if self.guard.held else ""
        return f"waiting for labels ({have}/{self.cfg.min_labels}{held})"

    def due(self) -> bool:
        """``heal_every`` new transactions or labels since the last heal started."""
        return self._since_heal >= self.cfg.heal_every

    def prepare(self) -> HealJob | None:
        """A heal job on the episode's rows, if one can start now."""
        if self.ready() is not None or self.episode is None:
            return None
        self._since_heal = 0
        return self.job_for(self.buffer.snapshot(since=self.episode.start))

    def job_for(self, batch: HealBatch) -> HealJob:
        """A heal job on ``batch`` from the live adapter (the research protocol heals on its batch)."""
        self.n_heals += 1
        return HealJob(self.n_heals, self.bundle.new_model(self.adapter), batch, self.version)

    def run(self, job: HealJob) -> HealResult:
        b = self.bundle
        shadow = b.adapter_state if self.cfg.heal.compare_shadow else None
        return heal_cycle(job.model, job.batch, b.rules, b.threshold, b.costs, self.cfg.heal, shadow)

    def finish(
        self,
        job: HealJob,
        result: HealResult,
        pre_metrics: dict[str, float] | None = None,
        post_metrics: dict[str, float] | None = None,
    ) -> HealOutcome:
        """Record the job's snapshots; an accepted candidate goes live. The snapshots carry
        ``accuracy`` and ``f1`` from the held-out labels unless given."""
        m = result.metrics
        pre_m: dict[str, float] = {}
        post_m: dict[str, float] = dict(m)
        if "holdout_f1_before" in m:  # both judged on the same held-out rows
            pre_m = {"accuracy": m["holdout_accuracy_before"], "f1": m["holdout_f1_before"]}
            post_m.update(accuracy=m["holdout_accuracy_after"], f1=m["holdout_f1_after"])
        pre_metrics = pre_metrics if pre_metrics is not None else pre_m
        post_metrics = {**post_m, **(post_metrics or {})}
        pre = self.registry.record(
            "pre", job.model.adapter_state(), job.version, metrics=pre_metrics, heal=job.number
        )
        version = self.registry.latest_version + 1
        post = self.registry.record(
            "post",
            result.adapter,
            version,
            parent=job.version,
            metrics=post_metrics,
            heal=job.number,
            accepted=result.accepted,
            note=result.reason,
        )
        if result.accepted:
            if self.labels_at_first_heal is None:
                self.labels_at_first_heal = int(m.get("n_labelled", 0))
            self.live = post
            if self.baseline_version < 0:
                self.baseline_version = version
        return HealOutcome(job, result, pre, post)

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
        loses = self.shadow.verdict() if self.cfg.shadow_guard else None
        if loses is not None:
            self.shadow.clear()
            self.paused = f"healing paused for this episode: {loses}"
            self.watch.reset_window()
            if self.version == 0:
                return Degraded(loses)  # already on the shadow's adapter
            return self._roll_back(self.bundle.adapter_state, 0, loses)
        reason = self.watch.degraded
        if reason is None:
            return None
        self.watch.reset_window()
        best = self.registry.best_post_heal("f1", since=self.episode_seq)
        if best is None or best.version == self.version:
            return Degraded(reason)
        return self._roll_back(best.adapter, best.version, reason)

    def _roll_back(self, adapter: AdapterState, version: int, reason: str) -> RolledBack:
        from_version = self.version
        self.live = self.registry.record("rollback", adapter, version, parent=from_version, note=reason)
        self.watch.reset_window()
        return RolledBack(self.live, from_version, reason)

    def adopt(self, snapshot: Snapshot) -> bool:
        """A snapshot written by someone else (``selfheal registry rollback``): a manual one
        becomes live. True if it changed the live adapter."""
        if not self.registry.adopt(snapshot) or snapshot.kind != "manual":
            return False
        self.live = snapshot
        return True
