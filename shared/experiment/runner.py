"""Offline experiments: a scenario's stream through scoring, FIDI, rules, healing and the registry.

Two protocols:

``seed``
    The research system's protocol, faithfully: 25 batches of 100 drawn with replacement
    from the 1,000 drifted rows, each batch healed with its *own* true labels, judged by
    accuracy at threshold 0.5, and evaluated at the end on the 1,000 drifted rows.

``delayed`` (default)
    A stream in order: ``n_pre`` clean rows, then drift. Labels arrive ``label_delay``
    transactions after their decision and are joined by id in a bounded buffer; healing
    never sees a label before it arrives. Every row is scored by the adapter live when
    it arrived (prequential), and the headline rows cover the stream from
    ``adapt_window`` rows after the drift point to the end. ``label_free`` withholds
    every label: healing has only rules and entropy.

In both, the frozen backbone and head are hashed before and after the run.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.bundle import Bundle
from shared.data import Scenario, build
from shared.data.scenarios import _seed_regime
from shared.drift import FIDI, ConflictRate, WindowFIDI
from shared.errors import ConfigError
from shared.evaluation import (
    CostMatrix,
    Metrics,
    cost_optimal_threshold,
    evaluate_scores,
    metrics_from_predictions,
)
from shared.healing import HealBatch, HealConfig, LabelJoinBuffer
from shared.healing.healer import Healer, HealerConfig, HealOutcome
from shared.model import AdapterState, ModelConfig, SelfHealingModel
from shared.registry import MemoryStore, Registry, RollbackPolicy
from shared.scoring import ScoringCore
from shared.training import TrainConfig, build_bundle, train_model

Progress = Callable[[str], None]

# The research system's published run (seed-facts.md), for the side-by-side table.
_KEYS = ("accuracy", "precision", "recall", "f1", "tp", "fp", "fn", "tn")
PUBLISHED = {
    "clean": dict(zip(_KEYS, (0.929, 0.784, 0.727, 0.754, 109, 30, 41, 820), strict=True)),
    "noheal": dict(zip(_KEYS, (0.446, 0.194, 0.853, 0.316, 128, 532, 22, 318), strict=True)),
    "healed": dict(zip(_KEYS, (0.724, 0.224, 0.340, 0.270, 51, 177, 99, 673), strict=True)),
}

SEED_HEAL = HealConfig(
    steps=5,
    rule_abstain_label=0.0,
    rule_reliability=False,
    gate=False,
    holdout_fraction=0.0,
    guard_collapse=False,
    compare_shadow=False,
    refit_offset=False,  # none of selfheal's additions: the research system's heal
)


@dataclass(frozen=True)
class ExperimentConfig:
    scenario: str = "seed"
    protocol: str = "delayed"  # "seed" or "delayed"
    label_delay: int = 500  # transactions between a decision and the arrival of its label
    label_free: bool = False  # no label ever arrives; heal on rules and entropy only
    batch_size: int = 100  # rows per scoring batch (and per FIDI update)
    seed: int = 42
    n_pre: int = 2000  # clean rows before the drift point (delayed protocol)
    n_post: int = 8000  # rows after it
    adapt_window: int = 1000  # rows after the drift point left out of the headline rows
    buffer_rows: int = 2000  # rows the heal buffer keeps
    conflicts_per_100: float = 5.0  # seed protocol: heal when a batch has this many conflicts per 100
    min_labels: int = 100  # arrived labels from the drift episode needed before a labelled heal
    costs: CostMatrix = field(default_factory=CostMatrix)
    heal: HealConfig | None = None  # None: the protocol's default (seed: the research settings)
    rollback: RollbackPolicy = field(default_factory=RollbackPolicy)
    fidi: dict[str, Any] = field(default_factory=dict)  # FIDI keyword overrides
    poison: tuple[int, int] | None = None  # (first row, rows): labels of these rows arrive flipped

    def __post_init__(self) -> None:
        if self.protocol not in ("seed", "delayed"):
            raise ConfigError(f"protocol must be 'seed' or 'delayed', got {self.protocol!r}")
        if self.label_delay < 0 or self.batch_size < 1:
            raise ConfigError("label_delay must be >= 0 and batch_size >= 1")


@dataclass
class ExperimentResult:
    config: ExperimentConfig
    summary: dict[str, Any]
    batches: list[dict[str, Any]]
    events: list[dict[str, Any]]
    registry: Registry


def base_digest(model: SelfHealingModel) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.base_state().items()):
        h.update(k.encode())
        h.update(v.numpy().tobytes())
    return h.hexdigest()


def run(config: ExperimentConfig, progress: Progress | None = None) -> ExperimentResult:
    say = progress or (lambda _msg: None)
    scenario = build(config.scenario, seed=config.seed, n_pre=config.n_pre, n_post=config.n_post)
    if config.protocol == "seed":
        if scenario.drift_test is None:
            raise ConfigError("the seed protocol needs the seed scenario's drifted set: use --scenario seed")
        return _SeedRun(config, scenario, say).run()
    return _DelayedRun(config, scenario, say).run()


class _Run:
    """What both protocols share: the bundle, live and shadow models, FIDI, registry, events."""

    def __init__(self, config: ExperimentConfig, scenario: Scenario, say: Progress) -> None:
        self.cfg, self.sc, self.say = config, scenario, say
        say(f"training the base model on {len(scenario.train.y):,} clean rows of {scenario.name!r}")
        self.bundle = self._train()
        self.core = ScoringCore(self.bundle)  # the scorer's own core: live and shadow in one pass
        self.digest = base_digest(self.core.model)
        self.rules = self.bundle.rules
        self.threshold = self.bundle.threshold
        self.fidi = self._fidi()
        self.registry = Registry(MemoryStore(), self.bundle.id)
        self.healer = Healer(self.bundle, self.registry, self.healer_config())
        self.events: list[dict[str, Any]] = []
        self.rows: list[dict[str, Any]] = []
        self.n_rollbacks = 0
        self.heal_ms: list[float] = []
        self.score_ms: list[float] = []
        self.first_alarm: int | None = None  # row (or batch) at which FIDI first alarmed

    def healer_config(self) -> HealerConfig:
        c = self.cfg
        return HealerConfig(
            buffer_rows=c.buffer_rows,
            min_labels=c.min_labels,
            label_free=c.label_free,
            heal=c.heal or HealConfig(),
            rollback=c.rollback,
        )

    # -- set-up
    val_fraction = 0.2  # training rows held out to pick the threshold
    fixed_threshold: float | None = None  # or a threshold given up front

    def _train(self) -> Bundle:
        sc = self.sc
        return build_bundle(
            sc.train.X,
            sc.train.y,
            sc.features,
            sc.rules_toml,
            self.cfg.costs,
            label="Class",
            val_fraction=self.val_fraction,
            threshold=self.fixed_threshold,
            train_config=TrainConfig(seed=self.cfg.seed),
            source=f"scenario:{sc.name}",
        )

    def _fidi(self) -> FIDI | WindowFIDI:
        return self.bundle.new_fidi(**self.cfg.fidi)

    # -- one batch's scoring, drift and conflicts
    def score(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t0 = time.perf_counter()
        p, ps = self.core.score(X)
        self.score_ms.append((time.perf_counter() - t0) * 1e3 * 100 / max(len(X), 1))
        return p, ps

    def go_live(self, adapter: AdapterState, version: int) -> None:
        self.core.offer(adapter, version)
        self.core.swap_if_pending()

    def observe(self, b: int, X: np.ndarray, position: int) -> None:
        """FIDI on this batch, whose first row (or batch number) is ``position``; the row (or
        batch) at which FIDI first alarmed is recorded."""
        self.fidi.update(X)
        if self.fidi.drift_detected:
            if self.first_alarm is None:
                self.first_alarm = position + (self.fidi.detected_at or 0)
            self.event("drift", b, features=self.fidi.drifting_features, index=self.fidi.index)
            feats = ", ".join(self.fidi.drifting_features)
            self.say(f"batch {b:3d}: drift on {feats} (FIDI {self.fidi.index:.2f})")
        if self.fidi.recovered:
            self.event("recovered", b, index=self.fidi.index)
            self.say(f"batch {b:3d}: recovered (FIDI {self.fidi.index:.2f})")

    def event(self, kind: str, batch: int, **details: Any) -> None:
        self.events.append({"type": kind, "batch": batch, "ts": time.time(), **details})

    # -- healing and rollback, through the shared Healer
    def apply(self, b: int, outcome: HealOutcome) -> str:
        """Log a finished heal; an accepted one goes live. Returns the batch's action."""
        r = outcome.result
        self.heal_ms.append(r.duration_ms)
        self.event(
            "heal",
            b,
            heal=outcome.job.number,
            accepted=r.accepted,
            reason=r.reason,
            version=outcome.post.version,
            pre_snapshot=outcome.pre.id,
            post_snapshot=outcome.post.id,
            terms=r.terms,
            duration_ms=r.duration_ms,
        )
        if not r.accepted:
            return "heal refused"
        self.go_live(self.healer.adapter, self.healer.version)
        return "healed"

    def maybe_rollback(self, b: int) -> bool:
        snap, reason = self.healer.check_rollback()
        if reason is None:
            return False
        if snap is None:
            self.event("degraded", b, reason=reason, note="already on the best post-heal adapter")
            return False
        self.go_live(snap.adapter, snap.version)
        self.event(
            "rollback", b, reason=reason, to_version=snap.version, from_version=snap.parent, snapshot=snap.id
        )
        self.say(f"batch {b:3d}: rollback to v{snap.version}: {reason}")
        self.n_rollbacks += 1
        return True

    def state(self, action: str) -> str:
        if action == "rollback":
            return "rolled_back"
        if action == "healed":
            return "healing"
        return "drift" if self.fidi.in_drift else "stable"

    @property
    def label_delay(self) -> int | None:
        if self.cfg.protocol == "seed":
            return 0  # each batch is healed with its own labels
        return None if self.cfg.label_free else self.cfg.label_delay

    def finish(self, rows: dict[str, Metrics], extra: dict[str, Any]) -> ExperimentResult:
        unchanged = base_digest(self.core.model) == self.digest
        if not unchanged:
            raise AssertionError("a backbone or head weight changed during the run")
        summary = {
            "protocol": self.cfg.protocol,
            "scenario": self.sc.name,
            "label_delay": self.label_delay,
            "label_free": self.cfg.label_free,
            "bundle": self.bundle.id,
            "threshold": self.threshold,
            "costs": self.cfg.costs.to_dict(),
            "rows": {name: m.to_dict() for name, m in rows.items()},
            "heals": self.registry.n_heals,
            "heals_accepted": len(self.registry.post_heal()),
            "rollbacks": self.n_rollbacks,
            "snapshots": len(self.registry),
            "final_adapter_version": self.healer.version,
            "labels_at_first_heal": self.healer.labels_at_first_heal,
            "base_unchanged": unchanged,
            "timing": {
                "score_ms_per_100_rows": float(np.median(self.score_ms)) if self.score_ms else None,
                "heal_ms_mean": float(np.mean(self.heal_ms)) if self.heal_ms else None,
            },
            **extra,
        }
        return ExperimentResult(self.cfg, summary, self.rows, self.events, self.registry)


def _batch_metrics(
    prefix: str, y: np.ndarray, p: np.ndarray, threshold: float, costs: CostMatrix
) -> dict[str, float]:
    m = metrics_from_predictions(y, p >= threshold, costs)
    return {f"{prefix}_accuracy": m.accuracy, f"{prefix}_f1": m.f1, f"{prefix}_cost": m.cost}


class _SeedRun(_Run):
    """The research protocol: the batch's own labels, threshold 0.5, judged on 1,000 drifted rows."""

    val_fraction = 0.0  # the research code trains on all 5,000 rows
    fixed_threshold = 0.5

    def _fidi(self) -> FIDI | WindowFIDI:
        """The research system's detector: V14's window of batch means, |shift| >= 1 sd."""
        j = self.bundle.features.index("V14")
        b = self.bundle
        kw = {"window": 10, "min_batches": 3, "alpha": None, "min_effect": 1.0, **self.cfg.fidi}
        return WindowFIDI(b.reference_mean[[j]], b.reference_std[[j]], features=["V14"], **kw)

    def healer_config(self) -> HealerConfig:
        return HealerConfig(heal=self.cfg.heal or SEED_HEAL, rollback=self.cfg.rollback, shadow_guard=False)

    def batch_metrics(self, adapter: AdapterState, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        m = metrics_from_predictions(
            y, self.bundle.new_model(adapter).predict_proba(X) >= self.threshold, self.cfg.costs
        )
        return {"accuracy": m.accuracy, "f1": m.f1}

    def run(self) -> ExperimentResult:
        cfg, sc = self.cfg, self.sc
        assert sc.drift_test is not None
        j = self.bundle.features.index("V14")
        self.say(
            f"seed protocol: {len(sc.seed_batches)} batches of 100 from the drifted set, batch labels used"
        )
        for b, idx in enumerate(sc.seed_batches, start=1):
            X, y = sc.drift_test.X[idx], sc.drift_test.y[idx]
            p, ps = self.score(X)
            self.observe(b, X[:, [j]], b)
            fired = self.rules.fires(X)
            n_conf = int(self.rules.conflicts(X, p, fired).sum())
            pre = metrics_from_predictions(y, p >= self.threshold, cfg.costs)
            row: dict[str, Any] = {
                "batch": b,
                "fidi_index": self.fidi.index,
                "fidi_top_feature": "V14",
                "conflicts": n_conf,
                **_batch_metrics("noheal", y, ps, self.threshold, cfg.costs),
                **_batch_metrics("pre", y, p, self.threshold, cfg.costs),
            }
            action, terms = "monitor", dict[str, float]()
            watch = self.healer.watch
            if self.fidi.in_drift or n_conf >= cfg.conflicts_per_100 * len(y) / 100:
                # the research code heals on the batch with its own labels, and judges the
                # result on that batch too; its first post-heal metrics are the baseline
                job = self.healer.job_for(HealBatch(X, y))
                result = self.healer.run(job)
                post = self.batch_metrics(result.adapter, X, y)
                outcome = self.healer.finish(job, result, {"accuracy": pre.accuracy, "f1": pre.f1}, post)
                action, terms = self.apply(b, outcome), result.terms
                if watch.baseline_f1 is None:
                    watch.set_baseline(post["accuracy"], post["f1"])
                watch.update(post["accuracy"], post["f1"])
                if self.maybe_rollback(b):
                    action = "rollback"
            else:
                watch.update(pre.accuracy, pre.f1)
            p_after, _ = self.score(X)
            row.update(_batch_metrics("healed", y, p_after, self.threshold, cfg.costs))
            row.update(
                state=self.state(action),
                action=action,
                adapter_version=self.healer.version,
                **{f"loss_{k}": v for k, v in terms.items()},
            )
            self.rows.append(row)
            self.say(
                f"batch {b:3d}  FIDI {self.fidi.index:5.2f}  conflicts {n_conf:3d}  "
                f"no-heal acc {row['noheal_accuracy']:.3f}  healed acc {row['healed_accuracy']:.3f}  {action}"
            )
        D, C = sc.drift_test, sc.clean_test
        t = self.threshold
        bayes_p = _seed_regime(True).posterior(D.X)
        rows = {
            "clean": evaluate_scores(C.y, self.core.score(C.X)[1], t, cfg.costs),
            "noheal": evaluate_scores(D.y, self.core.score(D.X)[1], t, cfg.costs),
            "healed": evaluate_scores(D.y, self.core.score(D.X)[0], t, cfg.costs),
            "all_normal": metrics_from_predictions(D.y, np.zeros(len(D.y)), cfg.costs),
            "bayes": evaluate_scores(D.y, bayes_p, cfg.costs.bayes_threshold, cfg.costs),
        }
        extra = {
            "published": PUBLISHED,
            "batches": len(sc.seed_batches),
            "eval": {"rows": len(D.y), "set": "drift_test"},
            "drift_detected_batch": self.first_alarm,
        }
        return self.finish(rows, extra)


class _DelayedRun(_Run):
    """Labels arrive late; every row scored by the adapter live at its arrival.

    A drift *episode* starts when FIDI or the conflict rate alarms. Healing then uses
    only rows from the estimated onset on (older rows show the old distribution), waits
    for ``min_labels`` of their labels unless label-free, and the quality watch and the
    rollback candidates are those of the episode.
    """

    def run(self) -> ExperimentResult:
        cfg, s, healer = self.cfg, self.sc.stream, self.healer
        n, bs = len(s), cfg.batch_size
        probs = np.zeros(n, dtype=np.float32)
        shadow = np.zeros(n, dtype=np.float32)
        conflict_rate = ConflictRate(float(self.bundle.info.get("reference_conflict_rate", 0.0)))
        arrived = 0  # labels of rows [0, arrived) have arrived
        labels = s.y.copy()  # as they arrive: a poisoned burst arrives flipped
        if cfg.poison is not None:
            first, count = cfg.poison
            labels[first : first + count] = 1 - labels[first : first + count]
        mode = "no labels (label-free)" if cfg.label_free else f"labels {cfg.label_delay} transactions late"
        self.say(f"delayed protocol on {self.sc.name!r}: {n:,} rows, drift at {s.drift_at}, {mode}")
        for b, start in enumerate(range(0, n, bs), start=1):
            end = min(start + bs, n)
            X, y, ids = s.X[start:end], s.y[start:end], list(s.ids[start:end])
            p, ps = self.score(X)
            probs[start:end], shadow[start:end] = p, ps
            healer.add_decisions(
                ids,
                (p >= self.threshold).tolist(),
                [healer.version] * len(ids),
                (ps >= self.threshold).tolist(),
            )
            self.observe(b, X, start)
            n_conf = int(self.rules.conflicts(X, p).sum())
            conflict_rate.update(n_conf, len(y))
            healer.add_transactions(ids, X)

            alarm = self.fidi.in_drift or conflict_rate.elevated
            if alarm and healer.episode is None:
                onset = self.fidi.onset_rows() if self.fidi.in_drift else 3 * bs
                healer.open_episode(onset)
                why = "FIDI" if self.fidi.in_drift else f"conflict rate {conflict_rate.rate:.3f}"
                self.event("episode", b, onset_row=healer.episode, trigger=why)
                self.say(f"batch {b:3d}: drift episode ({why}); healing on rows from {healer.episode:,}")
            elif not alarm and healer.episode is not None:
                self.event("episode_end", b)
                healer.close_episode()

            new_arrived = arrived if cfg.label_free else max(arrived, end - cfg.label_delay)
            if new_arrived > arrived:
                healer.add_labels(list(s.ids[arrived:new_arrived]), labels[arrived:new_arrived].tolist())
                arrived = new_arrived

            for e in healer.drain_events():
                self.event(f"labels_{e['state']}", b, **{k: v for k, v in e.items() if k != "state"})
                self.say(f"batch {b:3d}: labels {e['state']}: {e['reason']}")
            action, terms = "monitor", dict[str, float]()
            if healer.episode is not None:
                outcome = healer.heal()
                if outcome is None:
                    action = "waiting for labels"
                else:
                    action, terms = self.apply(b, outcome), outcome.result.terms
                    if action == "healed":
                        self.say(f"batch {b:3d}: healed -> v{healer.version} ({outcome.result.reason})")
                if self.maybe_rollback(b):
                    action = "rollback"
            row: dict[str, Any] = {
                "batch": b,
                "start": start,
                "end": end,
                "fidi_index": self.fidi.index,
                "fidi_top_feature": self.fidi.top_feature or "",
                "drifting_features": len(self.fidi.drifting_features),
                "conflicts": n_conf,
                "conflict_rate": conflict_rate.rate,
                "labels_arrived": arrived,
                **_batch_metrics("noheal", y, ps, self.threshold, cfg.costs),
                **_batch_metrics("healed", y, p, self.threshold, cfg.costs),
                "state": self.state(action),
                "action": action,
                "adapter_version": healer.version,
                "live_f1": healer.watch.rolling_f1,
                **{f"loss_{k}": v for k, v in terms.items()},
            }
            self.rows.append(row)
            if b % 10 == 0:
                heals = f"{len(self.registry.post_heal())}/{self.registry.n_heals}"
                self.say(
                    f"batch {b:3d}/{math.ceil(n / bs)}  adapter v{healer.version}  "
                    f"FIDI {self.fidi.index:5.2f}  labels {arrived:,}  heals {heals}"
                )
        return self.finish(*self._evaluate(probs, shadow, healer.buffer))

    def _oracle(self, point: int) -> np.ndarray:
        s = self.sc.stream
        return oracle_scores(s.X[point:], s.y[point:], self.bundle.config, self.cfg.costs, self.cfg.seed)

    def _evaluate(
        self, probs: np.ndarray, shadow: np.ndarray, buffer: LabelJoinBuffer
    ) -> tuple[dict[str, Metrics], dict[str, Any]]:
        cfg, s, t = self.cfg, self.sc.stream, self.threshold
        point = s.drift_at if s.drift_at is not None else self.cfg.n_pre
        e0 = min(point + cfg.adapt_window, len(s) - 1)
        sl = slice(e0, len(s))
        y = s.y[sl]
        self.say("training the oracle: the same architecture on the drifted labels (2 folds)")
        oracle = self._oracle(point)
        C = self.sc.clean_test
        rows = {
            "clean": evaluate_scores(C.y, self.core.score(C.X)[1], t, cfg.costs),
            "noheal": evaluate_scores(y, shadow[sl], t, cfg.costs),
            "healed": evaluate_scores(y, probs[sl], t, cfg.costs),
            "all_normal": metrics_from_predictions(y, np.zeros(len(y)), cfg.costs),
            "oracle": evaluate_scores(y, oracle[e0 - point :], cfg.costs.bayes_threshold, cfg.costs),
            "bayes": evaluate_scores(y, s.posterior[sl], cfg.costs.bayes_threshold, cfg.costs),
        }
        detection = None
        if self.first_alarm is not None and s.drift_at is not None:
            detection = self.first_alarm - s.drift_at
        extra = {
            "eval": {
                "from": e0,
                "to": len(s),
                "rows": len(y),
                "drift_at": s.drift_at,
                "adapt_window": cfg.adapt_window,
            },
            "drift_first_alarm_row": self.first_alarm,
            "detection_delay_rows": detection,
            "false_alarm": bool(
                self.first_alarm is not None and (s.drift_at is None or self.first_alarm <= s.drift_at)
            ),
            "labels": buffer.stats(),
        }
        return rows, extra


def oracle_scores(
    X: np.ndarray, y: np.ndarray, config: ModelConfig, costs: CostMatrix, seed: int
) -> np.ndarray:
    """Out-of-sample scores of the same architecture retrained on drifted rows ``X, y``.

    Two folds: each half is scored by a model trained on the other, so no row is scored
    by a model that saw its label. Each fold's scores are shifted so that its own
    cost-optimal threshold maps to the Bayes threshold ``costs.bayes_threshold``.
    """
    fold = np.arange(len(y)) % 2
    scores = np.zeros(len(y), dtype=np.float64)
    for k in (0, 1):
        model, _ = train_model(X[fold != k], y[fold != k], config, TrainConfig(seed=seed))
        t = cost_optimal_threshold(y[fold != k], model.predict_proba(X[fold != k]), costs)
        scores[fold == k] = _rethreshold(model.predict_proba(X[fold == k]), t, costs.bayes_threshold)
    return scores


def _rethreshold(p: np.ndarray, t: float, target: float) -> np.ndarray:
    """Monotone map of scores taking ``t`` to ``target`` (a shift in logit space)."""

    def logit(v: np.ndarray | float) -> np.ndarray:
        q = np.clip(np.asarray(v, dtype=np.float64), 1e-7, 1 - 1e-7)
        out: np.ndarray = np.log(q) - np.log1p(-q)
        return out

    shifted = logit(p) - logit(t) + logit(target)
    result: np.ndarray = 1.0 / (1.0 + np.exp(-shifted))
    return result
