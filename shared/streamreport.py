"""What the topics say about quality: decisions joined with late labels by id.

Used by ``selfheal report`` (reads the topics once) and by ``make demo`` (live progress).
The first decision of an id counts (a redelivered duplicate carries the same id); the
shadow score on each decision is the frozen no-heal model's, so no-heal and healed are
compared on exactly the same transactions.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from shared.evaluation import CostMatrix, Metrics, evaluate_scores, metrics_from_predictions
from shared.feedback import metric_source
from shared.messages import Decision, Reject, decode_decision, decode_label


class LoggedDecision(NamedTuple):
    decision: Decision
    ts_ms: float  # the decision record's timestamp (when the scorer produced it)


@dataclass
class DecisionLog:
    costs: CostMatrix = field(default_factory=CostMatrix)
    decisions: dict[str, LoggedDecision] = field(default_factory=dict)  # by transaction id
    labels: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    # True: ``labels`` holds the truth (a replay that knows it) and the topic's labels are only
    # counted: under a feedback model they are what the team was told, not what happened
    truth_known: bool = False
    label_sources: Counter[str] = field(default_factory=Counter)  # labels read, by ``source``

    def add_decision(self, raw: bytes | None, ts_ms: float = 0.0) -> Decision | None:
        """The decision, if it is one and the first of its id."""
        d = decode_decision(raw)
        if isinstance(d, Reject):
            return None
        if d.id in self.decisions:
            self.duplicates += 1
            return None
        self.decisions[d.id] = LoggedDecision(d, ts_ms)
        return d

    def add_label(self, raw: bytes | None) -> None:
        label = decode_label(raw)
        if isinstance(label, Reject):
            return
        self.label_sources[metric_source(label.source)] += 1
        if not self.truth_known:
            self.labels[label.id] = label.label

    def joined(self, last: int | None = None) -> dict[str, np.ndarray]:
        """Arrays over the labelled decisions in decision-time order (the ``last`` newest)."""
        keys = [k for k in self.decisions if k in self.labels]
        keys.sort(key=lambda k: self.decisions[k].ts_ms)
        if last is not None:
            keys = keys[-last:]
        ds = [self.decisions[k].decision for k in keys]
        return {
            "y": np.array([self.labels[k] for k in keys], dtype=np.float64),
            "score": np.array([d.score for d in ds], dtype=np.float64),
            "shadow": np.array([d.shadow_score for d in ds], dtype=np.float64),
            "threshold": np.array([d.threshold for d in ds], dtype=np.float64),
            "version": np.array([d.adapter_version for d in ds], dtype=np.int64),
        }

    def rows(self, last: int | None = None) -> dict[str, Metrics]:
        j = self.joined(last)
        if len(j["y"]) == 0:
            return {}
        t = float(j["threshold"][0])
        return {
            "noheal": evaluate_scores(j["y"], j["shadow"], t, self.costs),
            "healed": evaluate_scores(j["y"], j["score"], t, self.costs),
            "all_normal": metrics_from_predictions(j["y"], np.zeros(len(j["y"])), self.costs),
        }

    def batches(self, size: int = 100) -> list[dict[str, Any]]:
        """Per-batch rows in the experiment's metrics.csv format (for the same plots). A batch's
        adapter version is its last decision's; a version not seen before is a heal, a return
        to an older one a rollback."""
        j = self.joined()
        out: list[dict[str, Any]] = []
        seen = {0}
        for b, lo in enumerate(range(0, len(j["y"]), size), start=1):
            sl = slice(lo, lo + size)
            y, t = j["y"][sl], float(j["threshold"][lo])
            nh = metrics_from_predictions(y, j["shadow"][sl] >= t, self.costs)
            h = metrics_from_predictions(y, j["score"][sl] >= t, self.costs)
            version = int(j["version"][sl][-1])
            prev = out[-1]["adapter_version"] if out else 0
            action = "monitor" if version == prev else ("rollback" if version in seen else "healed")
            seen.add(version)
            state = {"healed": "healing", "rollback": "rolled_back"}.get(action)
            out.append(
                {
                    "batch": b,
                    "start": lo,
                    "end": lo + len(y),
                    "noheal_accuracy": nh.accuracy,
                    "noheal_f1": nh.f1,
                    "noheal_cost": nh.cost,
                    "healed_accuracy": h.accuracy,
                    "healed_f1": h.f1,
                    "healed_cost": h.cost,
                    "adapter_version": version,
                    "action": action,
                    "state": state or ("stable" if version == 0 else "drift"),
                }
            )
        return out
