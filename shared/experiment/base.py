"""What both offline protocols share: the bundle, the scorer's own core, the monitor's own
core, the healer and its registry, and the record of what happened (events and rows)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from shared.bundle import Bundle
from shared.data import Scenario
from shared.evaluation import CostMatrix, Metrics, metrics_from_predictions
from shared.experiment.config import ExperimentConfig, ExperimentResult
from shared.healing.before_labels import Diagnosed
from shared.healing.events import (
    Degraded,
    EpisodeClosed,
    EpisodeOpened,
    HealerEvent,
    HealOutcome,
    LabelsJudged,
    RolledBack,
)
from shared.healing.healer import Healer
from shared.messages import Alert
from shared.model import AdapterState, SelfHealingModel
from shared.monitoring import DriftMonitor
from shared.registry import MemoryStore, Registry
from shared.scoring import ScoringCore
from shared.training import TrainConfig, build_bundle

Progress = Callable[[str], None]


def base_digest(model: SelfHealingModel) -> str:
    """A hash of the frozen backbone and head: it must not change during a run."""
    h = hashlib.sha256()
    for k, v in sorted(model.base_state().items()):
        h.update(k.encode())
        h.update(v.numpy().tobytes())
    return h.hexdigest()


def batch_metrics(
    prefix: str, y: np.ndarray, p: np.ndarray, threshold: float, costs: CostMatrix
) -> dict[str, float]:
    m = metrics_from_predictions(y, p >= threshold, costs)
    return {f"{prefix}_accuracy": m.accuracy, f"{prefix}_f1": m.f1, f"{prefix}_cost": m.cost}


class Run:
    val_fraction = 0.2  # training rows held out to pick the threshold
    fixed_threshold: float | None = None  # or a threshold given up front

    def __init__(self, config: ExperimentConfig, scenario: Scenario, say: Progress) -> None:
        self.cfg, self.sc, self.say = config, scenario, say
        say(f"training the base model on {len(scenario.train.y):,} clean rows of {scenario.name!r}")
        self.bundle = self._train()
        self.core = ScoringCore(self.bundle)  # the scorer's own core: live and shadow in one pass
        self.digest = base_digest(self.core.model)
        self.rules = self.bundle.rules
        self.threshold = self.bundle.threshold
        self.monitor = self._monitor()
        self.registry = Registry(MemoryStore(), self.bundle.id)
        self.healer = Healer(self.bundle, self.registry, config.healer_config)
        self.events: list[dict[str, Any]] = []
        self.rows: list[dict[str, Any]] = []
        self.n_rollbacks = 0
        self.heal_ms: list[float] = []
        self.score_ms: list[float] = []
        self.alarm_batches: list[int] = []  # the batches in which FIDI alarmed

    def _train(self) -> Bundle:
        sc = self.sc
        return build_bundle(
            sc.train.X,
            sc.train.y,
            sc.features,
            sc.rules_toml,
            self.cfg.costs,
            label="Class",
            train_config=TrainConfig(
                seed=self.cfg.seed, val_fraction=self.val_fraction, threshold=self.fixed_threshold
            ),
            source=f"scenario:{sc.name}",
            schema=sc.schema,
        )

    def _monitor(self) -> DriftMonitor:
        """The monitor service's core, with its defaults (FIDI on every feature)."""
        return DriftMonitor(self.bundle, **self.cfg.fidi)

    # -- scoring, as the scorer does it
    def score(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t0 = time.perf_counter()
        p, ps = self.core.score(X)
        self.score_ms.append((time.perf_counter() - t0) * 1e3 * 100 / max(len(X), 1))
        return p, ps

    def go_live(self, adapter: AdapterState, version: int) -> None:
        """What a published adapter does to a scorer: swapped in before the next batch."""
        self.core.offer(adapter, version)
        self.core.swap_if_pending()

    # -- what happened
    def event(self, kind: str, batch: int, **details: Any) -> None:
        self.events.append({"type": kind, "batch": batch, "ts": time.time(), **details})

    def record_alerts(self, b: int, alerts: list[Alert]) -> None:
        """The monitor's summary alerts of batch ``b`` as events."""
        for a in alerts:
            if a.feature == "fidi" and a.state == "drift":
                feats = self.monitor.fidi.drifting_features
                self.alarm_batches.append(b)
                self.event("drift", b, features=feats, index=a.statistic)
                self.say(f"batch {b:3d}: drift on {', '.join(feats)} (FIDI {a.statistic:.2f})")
            elif a.feature == "fidi":
                self.event("recovered", b, index=a.statistic)
                self.say(f"batch {b:3d}: recovered (FIDI {a.statistic:.2f})")
            elif a.feature == "conflicts":
                self.event(f"conflicts_{a.state}", b, rate=a.statistic, reference=a.threshold)
            elif a.feature == "categories" and a.state == "drift":
                cats = self.monitor.categories.moved if self.monitor.categories else {}
                self.event("categories_drift", b, fields=cats, index=a.statistic)
                moved = ", ".join(f"{f} ({c} {s:.1%} vs {r:.1%})" for f, (c, s, r) in cats.items())
                self.say(f"batch {b:3d}: category shift on {moved}")
            elif a.feature == "categories":
                self.event("categories_recovered", b, index=a.statistic)

    def record(
        self, b: int, events: Sequence[HealerEvent | Diagnosed]
    ) -> tuple[str | None, dict[str, float]]:
        """The healer's events as the service acts on them (an accepted heal or a rollback
        goes live); returns the batch's action (None: nothing healed) and loss terms."""
        action: str | None = None
        terms: dict[str, float] = {}
        for e in events:
            if isinstance(e, HealOutcome):
                action, terms = self._healed(b, e), e.result.terms
            elif isinstance(e, RolledBack):
                action = self._rolled_back(b, e)
            elif isinstance(e, Degraded):
                self.event(
                    "degraded", b, reason=e.reason, note="already on the adapter a rollback would restore"
                )
            elif isinstance(e, EpisodeOpened):
                self.event("episode", b, onset_row=e.start, trigger=e.trigger)
                self.say(f"batch {b:3d}: drift episode ({e.trigger}); healing on rows from {e.start:,}")
            elif isinstance(e, EpisodeClosed):
                self.event("episode_end", b, trigger=e.trigger)
            elif isinstance(e, Diagnosed):
                self.event(
                    "diagnosis", b, action=e.action, accepted=e.accepted, reason=e.details.get("reason")
                )
                self.say(f"batch {b:3d}: diagnosis {e.action}: {e.details.get('reason')}")
            elif isinstance(e, LabelsJudged):
                self.event(
                    f"labels_{e.state}", b, statistic=e.kappa, reason=e.reason, quarantined=e.quarantined
                )
                self.say(f"batch {b:3d}: labels {e.state}: {e.reason}")
        return action, terms

    def _healed(self, b: int, outcome: HealOutcome) -> str:
        r = outcome.result
        self.heal_ms.append(r.duration_ms)
        self.event(
            "heal",
            b,
            heal=outcome.job.number,
            accepted=r.accepted,
            reason=r.reason,
            verdict=None if r.verdict is None else r.verdict.value,
            version=outcome.post.version,
            pre_snapshot=outcome.pre.id,
            post_snapshot=outcome.post.id,
            terms=r.terms,
            duration_ms=r.duration_ms,
            heal_kind=outcome.job.kind,
            estimated_cost=r.metrics.get("estimated_cost_after"),
        )
        if not r.accepted:
            return "heal refused"
        self.go_live(outcome.post.adapter, outcome.post.version)
        return "healed"

    def _rolled_back(self, b: int, e: RolledBack) -> str:
        snap = e.snapshot
        self.go_live(snap.adapter, snap.version)
        self.event(
            "rollback",
            b,
            reason=e.reason,
            to_version=snap.version,
            from_version=e.from_version,
            snapshot=snap.id,
        )
        self.say(f"batch {b:3d}: rollback to v{snap.version}: {e.reason}")
        self.n_rollbacks += 1
        return "rollback"

    def state(self, action: str) -> str:
        if action == "rollback":
            return "rolled_back"
        if action == "healed":
            return "healing"
        return "drift" if self.monitor.fidi.in_drift else "stable"

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
        return ExperimentResult(self.cfg, summary, self.rows, self.events, self.registry, self.bundle)
