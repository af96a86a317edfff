"""The healer's policy, shared by the offline runner and the healer service.

It keeps the recent transactions and joins late labels to them, opens a drift *episode*
when told to (FIDI or conflict alarms), and then prepares heal jobs on the episode's rows
only, waiting for ``min_labels`` of their labels unless label-free. A finished job is
recorded in the registry (a ``pre`` and a ``post`` snapshot) and, when the gate accepted
it, becomes the live adapter. Live quality is measured from arriving labels against the
decisions the healed adapters made; when it degrades, ``check_rollback`` returns to the
best post-heal snapshot of the episode. Every decision also carries the shadow's (the
never-healed adapter's) verdict on the same transaction: when the healed decisions cost
significantly more than the shadow's on the same labelled rows (a paired z-test), the
healer rolls back to the bundle's adapter and heals no more in this episode.

The heal itself (:func:`heal_cycle`) runs wherever the caller likes: inline offline, on
a worker thread in the service. ``prepare`` and ``finish`` bracket it.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from shared.bundle import Bundle
from shared.evaluation import cohen_kappa, metrics_from_predictions, paired_z
from shared.healing.buffer import LabelJoinBuffer
from shared.healing.heal import HealBatch, HealConfig, HealResult, heal_cycle
from shared.model import AdapterState, SelfHealingModel
from shared.registry import QualityWatch, Registry, RollbackPolicy, Snapshot

LIVE_KINDS = ("initial", "rollback", "manual")


@dataclass(frozen=True)
class HealerConfig:
    buffer_rows: int = 2000  # recent transactions kept for healing
    min_labels: int = 100  # arrived labels from the episode needed before a labelled heal
    label_free: bool = False  # heal on rules alone, without waiting for labels
    quality_rows: int = 100  # arrived labels per live-quality measurement
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


@dataclass(frozen=True)
class HealJob:
    number: int
    model: SelfHealingModel  # its own copy, with the adapter live when the job was prepared
    batch: HealBatch
    version: int  # the live version it starts from


@dataclass(frozen=True)
class HealOutcome:
    job: HealJob
    result: HealResult
    pre: Snapshot
    post: Snapshot

    @property
    def accepted(self) -> bool:
        return self.result.accepted


class Healer:
    def __init__(self, bundle: Bundle, registry: Registry, config: HealerConfig | None = None) -> None:
        self.bundle, self.registry = bundle, registry
        self.cfg = config or HealerConfig()
        self.buffer = LabelJoinBuffer(self.cfg.buffer_rows, len(bundle.features))
        self.watch = QualityWatch(self.cfg.rollback)
        self.episode: int | None = None  # buffer position where the current episode began
        self.episode_seq = 0  # registry position at its start
        self.baseline_version = -1  # first version of the episode the watch judges
        self._decisions: OrderedDict[str, tuple[bool, int, bool | None]] = OrderedDict()
        self._judged: list[tuple[float, bool]] = []
        self._vs_shadow: deque[float] = deque(maxlen=self.cfg.shadow_rows)  # healed - shadow cost per row
        self.paused: str | None = None  # why healing stopped for the rest of this episode
        self._episode_ts: float | None = None  # the onset's timestamp, until a row that recent arrives
        self.n_heals = 0
        self.labels_at_first_heal: int | None = None
        self._held: list[tuple[str, float]] = []  # labels waiting for their chunk to be judged
        self._last_release: tuple[list[str], int] = (
            [],
            0,
        )  # (ids, registry length) of the last chunk released
        self._clean_chunks = 0
        self._pending_rollback: tuple[Snapshot, str] | None = None
        self.label_hold: str | None = None  # why healing waits for trustworthy labels
        self.label_kappa = float("nan")  # the shadow's agreement with the last judged chunk
        self.labels_quarantined = 0
        self.events: list[dict[str, object]] = []
        if len(registry) == 0:
            registry.record("initial", bundle.adapter_state, version=0, note="adapter as trained")
        self.live = self._live_from_registry()

    def _live_from_registry(self) -> Snapshot:
        """The adapter that went live last: after a restart, the healer resumes from it."""
        self.n_heals = self.registry.n_heals
        return self._live_before(len(self.registry))

    @property
    def version(self) -> int:
        return self.live.version

    @property
    def adapter(self) -> AdapterState:
        return self.live.adapter

    # -- what the stream shows
    def add_transactions(self, ids: Sequence[str], X: np.ndarray, ts: Sequence[float] | None = None) -> None:
        self.buffer.add_transactions(ids, X, ts)

    def add_decisions(
        self,
        ids: Sequence[str],
        fraud: Sequence[bool],
        versions: Sequence[int],
        shadow_fraud: Sequence[bool] | None = None,
    ) -> None:
        shadow: Sequence[bool | None] = shadow_fraud if shadow_fraud is not None else [None] * len(ids)
        for tx_id, f, v, sf in zip(ids, fraud, versions, shadow, strict=True):
            self._decisions[tx_id] = (bool(f), int(v), None if sf is None else bool(sf))
        while len(self._decisions) > self.cfg.decisions_kept:
            self._decisions.popitem(last=False)

    def add_labels(self, ids: Sequence[str], labels: Sequence[float]) -> None:
        """Labels as they arrive. With the label guard on they are held in chunks of
        ``quality_rows`` and reach the buffer (and the quality measurements) only once their
        chunk is judged trustworthy; see :meth:`_judge_chunk`."""
        if not self.cfg.label_guard:
            self._release([(i, float(y)) for i, y in zip(ids, labels, strict=True)])
            return
        for tx_id, y in zip(ids, labels, strict=True):
            self._held.append((tx_id, float(y)))
            if len(self._held) >= self.cfg.quality_rows:
                chunk, self._held = self._held, []
                self._judge_chunk(chunk)

    def _judge_chunk(self, chunk: list[tuple[str, float]]) -> None:
        """A burst of flipped labels shows as labels that disagree with the frozen shadow
        model beyond chance (Cohen's kappa below ``label_kappa_min``); drift does not do that
        (per-chunk kappa stays above 0.06 on every card scenario, flipped chunks fall to
        -0.03 to -0.7). A suspect chunk never reaches the buffer."""
        known = [
            (y >= 0.5, d[2]) for tx_id, y in chunk if (d := self._decisions.get(tx_id)) and d[2] is not None
        ]
        if len(known) >= self.cfg.label_guard_min:
            self.label_kappa = cohen_kappa([y for y, _ in known], [sf for _, sf in known])
            if self.label_kappa < self.cfg.label_kappa_min:
                self._quarantine(chunk, self.label_kappa, len(known))
                return
        self._clean_chunks += 1
        if self.label_hold is not None and self._clean_chunks >= self.cfg.label_resume_chunks:
            self.label_hold = None
            self.events.append(
                {
                    "feature": "labels",
                    "state": "trusted",
                    "statistic": self.label_kappa,
                    "threshold": self.cfg.label_kappa_min,
                    "reason": "labels agree with the shadow again",
                }
            )
        self._release(chunk)

    def _quarantine(self, chunk: list[tuple[str, float]], kappa: float, n: int) -> None:
        """Set a suspect chunk aside, pause healing, withdraw the chunk released before it (it
        may hold the burst's first labels) and, if an adapter healed since then is live, queue
        a rollback to the best post-heal snapshot made before it."""
        self.labels_quarantined += len(chunk)
        reason = (
            f"labels disagree with the bundle's own model beyond chance: kappa {kappa:.2f} < "
            f"{self.cfg.label_kappa_min} over {n} labels (a poisoned or broken label feed?)"
        )
        first = self.label_hold is None
        self.label_hold = f"healing paused: {reason}"
        self._clean_chunks = 0
        self.events.append(
            {
                "feature": "labels",
                "state": "suspect",
                "statistic": kappa,
                "threshold": self.cfg.label_kappa_min,
                "reason": reason,
                "quarantined": len(chunk),
            }
        )
        if not first:
            return
        prev_ids, seq0 = self._last_release
        self.buffer.forget_labels(prev_ids)
        if self.live.seq < seq0 or self.live.kind == "initial":
            return  # the live adapter was healed before any suspect label arrived
        before = [s for s in self.registry.post_heal(self.episode_seq) if s.seq < seq0 and "f1" in s.metrics]
        target = max(reversed(before), key=lambda s: s.metrics["f1"]) if before else self._live_before(seq0)
        if target.version != self.version:
            self._pending_rollback = (target, reason)

    def _live_before(self, seq: int) -> Snapshot:
        """The adapter that was live just before registry position ``seq``."""
        live = [
            s
            for s in self.registry.snapshots()[:seq]
            if s.kind in LIVE_KINDS or (s.kind == "post" and s.accepted)
        ]
        return live[-1]

    def _release(self, chunk: list[tuple[str, float]]) -> None:
        ids, labels = [i for i, _ in chunk], [y for _, y in chunk]
        self.buffer.add_labels(ids, labels)
        self._last_release = (ids, len(self.registry))
        if self.baseline_version < 1:
            return
        c = self.bundle.costs
        for tx_id, y in chunk:
            d = self._decisions.get(tx_id)
            if d is not None and d[1] >= self.baseline_version:
                self._judged.append((y, d[0]))
                if d[2] is not None and d[1] > 0:
                    self._vs_shadow.append(float(c.per_row(y, d[0]) - c.per_row(y, d[2])))
        q = self.cfg.quality_rows
        while len(self._judged) >= q:
            chunk_j, self._judged = self._judged[:q], self._judged[q:]
            m = metrics_from_predictions([c[0] for c in chunk_j], [c[1] for c in chunk_j], self.bundle.costs)
            self.watch.update(m.accuracy, m.f1)
            if self.watch.baseline_f1 is None and self.watch.n >= self.cfg.rollback.window:
                # the baseline: live quality of the first healed adapter's decisions
                self.watch.set_baseline(self.watch.rolling_accuracy, self.watch.rolling_f1)

    def drain_events(self) -> list[dict[str, object]]:
        """What the healer noticed about its inputs since the last call (labels suspect or
        trusted again), for the service to publish on drift-alerts."""
        out, self.events = self.events, []
        return out

    # -- episodes
    def open_episode(self, onset_rows: int = 0, onset_ts: float | None = None) -> bool:
        """Start an episode that began ``onset_rows`` transactions ago, or at the first row
        stamped at or after ``onset_ts`` (epoch ms; other consumers' positions differ from
        ours, timestamps do not). False if an episode is already open."""
        if self.episode is not None:
            return False
        self._episode_ts = onset_ts
        if onset_ts is not None:
            self.episode = self.buffer.position_since(onset_ts)
            self._resolve_episode()
        else:
            self.episode = max(0, self.buffer.seen - onset_rows)
        self.episode_seq = len(self.registry)
        self.watch = QualityWatch(self.cfg.rollback)
        self.baseline_version = -1
        self._judged = []
        self._vs_shadow.clear()
        self.paused = None
        return True

    def _resolve_episode(self) -> None:
        """An alert can overtake the transactions it names: until a row stamped at or after
        the onset has arrived, the episode has no rows (the rows still coming in are older)."""
        if self._episode_ts is None:
            return
        pos = self.buffer.position_since(self._episode_ts)
        if pos < self.buffer.seen:
            self.episode, self._episode_ts = pos, None
        else:
            self.episode = self.buffer.seen

    def close_episode(self) -> None:
        self.episode = None
        self._episode_ts = None

    # -- healing
    def ready(self) -> str | None:
        """Why no heal can start now, or None when one can."""
        if self.episode is None:
            return "no drift episode"
        self._resolve_episode()
        if self.paused is not None:
            return self.paused
        if self.label_hold is not None:
            return self.label_hold
        if self.cfg.label_free:
            return None
        have = self.buffer.snapshot(since=self.episode).n_labelled
        if have >= self.cfg.min_labels:
            return None
        held = f"; {len(self._held)} more being checked" if self._held else ""
        return f"waiting for labels ({have}/{self.cfg.min_labels}{held})"

    def prepare(self) -> HealJob | None:
        if self.ready() is not None or self.episode is None:
            return None
        return self.job_for(self.buffer.snapshot(since=self.episode))

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
        """prepare, run and finish in one call (offline)."""
        job = self.prepare()
        return None if job is None else self.finish(job, self.run(job))

    # -- rollback
    def versus_shadow(self) -> tuple[int, float]:
        """(labelled rows, paired z of healed-minus-shadow cost): z > 0 means healing costs more."""
        return len(self._vs_shadow), paired_z(list(self._vs_shadow))

    def check_rollback(self) -> tuple[Snapshot | None, str | None]:
        """(the rollback snapshot, reason) when quality degraded or the labels an adapter was
        healed on turned out suspect; (None, reason) when already on the best."""
        if self._pending_rollback is not None:
            target, reason = self._pending_rollback
            self._pending_rollback = None
            snap = self.registry.record(
                "rollback", target.adapter, target.version, parent=self.version, note=reason
            )
            self.live = snap
            self.watch.reset_window()
            return snap, reason
        n, z = self.versus_shadow()
        if self.cfg.shadow_guard and n >= self.cfg.shadow_min_rows and z >= self.cfg.shadow_z:
            d = float(np.mean(self._vs_shadow))
            reason = (
                f"healed decisions cost {d:+.3f} per transaction against the shadow's "
                f"over {n} labelled rows (z={z:.2f})"
            )
            self._vs_shadow.clear()
            self.paused = f"healing paused for this episode: {reason}"
            self.watch.reset_window()
            if self.version == 0:
                return None, reason
            initial = self.bundle.adapter_state
            snap = self.registry.record("rollback", initial, 0, parent=self.version, note=reason)
            self.live = snap
            return snap, reason
        degraded = self.watch.degraded
        if degraded is None:
            return None, None
        reason = degraded
        self.watch.reset_window()
        best = self.registry.best_post_heal("f1", since=self.episode_seq)
        if best is None or best.version == self.version:
            return None, reason
        snap = self.registry.record("rollback", best.adapter, best.version, parent=self.version, note=reason)
        self.live = snap
        return snap, reason

    def adopt(self, snapshot: Snapshot) -> bool:
        """A snapshot written by someone else (``selfheal registry rollback``): a manual one
        becomes live. True if it changed the live adapter."""
        if not self.registry.adopt(snapshot) or snapshot.kind != "manual":
            return False
        self.live = snapshot
        return True
