"""selfheal beside online learners: River's Hoeffding Adaptive Tree and Adaptive Random
Forest on the same stream, trained on the same clean rows, their labels exactly as late.

A streaming team's alternative to healing a frozen model is a learner that learns each
label as it arrives. Every system here sees the stream in batches of the delayed
protocol's size (:mod:`shared.experiment.delayed`): it scores a batch with what it knows
now, then the labels whose delay has passed arrive (selfheal's healer takes them; a River
learner ``learn_one``s them). Scores are compared on the same rows (from ``adapt_window``
rows after the drift point to the end): expected cost per transaction at each system's
decision threshold (selfheal: its bundle's; a River learner: the cost matrix's Bayes
threshold, as a cost-aware user would set it), the error rate of those decisions, and
PR-AUC (no threshold). River is a dev-extra dependency, needed here only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.data import Scenario
from shared.evaluation import CostMatrix, evaluate_scores
from shared.experiment.base import Progress
from shared.experiment.config import ExperimentConfig
from shared.experiment.delayed import DelayedRun


def river_learners(seed: int) -> dict[str, Callable[[], Any]]:
    """The peers, by name: River's strongest online classifiers for concept drift."""
    from river import forest, tree

    return {
        "river_hat": lambda: tree.HoeffdingAdaptiveTreeClassifier(seed=seed),
        "river_arf": lambda: forest.ARFClassifier(n_models=10, seed=seed),
    }


@dataclass(frozen=True)
class PeerScores:
    system: str
    scores: np.ndarray  # (n,) fraud probability of each stream row, as it was decided
    threshold: float
    seconds: float


def online_scores(
    make: Callable[[], Any], sc: Scenario, label_delay: int, batch_size: int, threshold: float, name: str
) -> PeerScores:
    """A River learner through the stream: trained on the clean rows, then per batch it
    scores the batch and learns the labels that have arrived (``label_delay`` rows late)."""
    t0 = time.perf_counter()
    model, features = make(), list(sc.features)

    def row(x: np.ndarray) -> dict[str, float]:
        return dict(zip(features, map(float, x), strict=True))

    for x, y in zip(sc.train.X, sc.train.y, strict=True):
        model.learn_one(row(x), int(y))
    s, n = sc.stream, len(sc.stream)
    scores = np.zeros(n, dtype=np.float64)
    arrived = 0
    for start in range(0, n, batch_size):
        end = min(start + batch_size, n)
        for i in range(start, end):
            scores[i] = model.predict_proba_one(row(s.X[i])).get(1, 0.0)
        now = max(arrived, end - label_delay)
        for j in range(arrived, now):
            model.learn_one(row(s.X[j]), int(s.y[j]))
        arrived = now
    return PeerScores(name, scores, threshold, time.perf_counter() - t0)


def compare(
    cfg: ExperimentConfig, sc: Scenario, say: Progress, peers: list[str] | None = None
) -> dict[str, Any]:
    """selfheal (healed, and its frozen shadow) and each peer on ``sc``'s stream: metrics
    over the headline rows, per system."""
    t0 = time.perf_counter()
    run = DelayedRun(cfg, sc, say)
    result = run.run()
    selfheal_s = time.perf_counter() - t0
    systems = [
        PeerScores("selfheal", run.probs.astype(np.float64), run.threshold, selfheal_s),
        PeerScores("frozen", run.shadow.astype(np.float64), run.threshold, 0.0),
    ]
    learners = river_learners(cfg.seed)
    for name in peers if peers is not None else list(learners):
        say(f"{name}: learning the stream, labels {cfg.label_delay} transactions late")
        systems.append(
            online_scores(
                learners[name], sc, cfg.label_delay, cfg.batch_size, cfg.costs.bayes_threshold, name
            )
        )
    ev = result.summary["eval"]
    return {
        "scenario": sc.name,
        "label_delay": cfg.label_delay,
        "eval": ev,
        "systems": {p.system: metrics(p, sc, ev["from"], cfg.costs) for p in systems},
        "oracle_cost": result.summary["rows"]["oracle"]["cost"],
    }


def metrics(p: PeerScores, sc: Scenario, start: int, costs: CostMatrix) -> dict[str, float]:
    y = sc.stream.y[start:]
    m = evaluate_scores(y, p.scores[start:], p.threshold, costs)
    return {
        "cost": m.cost,
        "error": 1.0 - m.accuracy,
        "pr_auc": float(m.pr_auc or 0.0),
        "f1": m.f1,
        "threshold": p.threshold,
        "seconds": round(p.seconds, 1),
    }


SYSTEMS = ("selfheal", "frozen", "river_hat", "river_arf")


def format_peers(results: list[dict[str, Any]]) -> str:
    """One markdown row per scenario and label delay: cost / error / PR-AUC per system."""
    head = "| scenario | labels late | " + " | ".join(SYSTEMS) + " | oracle cost |"
    lines = [head, "|" + "---|" * (len(SYSTEMS) + 3)]
    for r in results:
        cells = []
        best = min(r["systems"][s]["cost"] for s in SYSTEMS if s in r["systems"])
        for s in SYSTEMS:
            m = r["systems"].get(s)
            if m is None:
                cells.append("-")
                continue
            cost = f"{m['cost']:.3f}"
            cost = f"**{cost}**" if m["cost"] == best else cost
            cells.append(f"{cost} / {m['error']:.3f} / {m['pr_auc']:.3f}")
        lines.append(
            f"| {r['scenario']} | {r['label_delay']:,} | "
            + " | ".join(cells)
            + f" | {r['oracle_cost']:.3f} |"
        )
    return "\n".join(lines)
