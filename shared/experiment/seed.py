"""The research system's protocol, faithfully: 25 batches of 100 drawn with replacement from
the 1,000 drifted rows, each batch healed with its *own* true labels (the research code's
flaw, kept on purpose), judged by accuracy at threshold 0.5, and evaluated at the end on
the 1,000 drifted rows. Its detector is the research one (a window of V14's batch means,
through the monitor's core); it heals on drift or on 5 conflicts in a batch, not in
episodes."""

from __future__ import annotations

from typing import Any

import numpy as np

from shared.data.scenarios import seed_regime
from shared.drift import WindowFIDI
from shared.evaluation import evaluate_scores, metrics_from_predictions
from shared.experiment.base import Run, batch_metrics
from shared.experiment.config import ExperimentResult
from shared.healing import HealBatch
from shared.healing.events import HealerEvent
from shared.model import AdapterState
from shared.monitoring import DriftMonitor

# The research system's published run ("Self-Healing Neural Networks in PyTorch", Towards Data
# Science, 2026-03-29, and its production code), for the side-by-side table.
_KEYS = ("accuracy", "precision", "recall", "f1", "tp", "fp", "fn", "tn")
PUBLISHED = {
    "clean": dict(zip(_KEYS, (0.929, 0.784, 0.727, 0.754, 109, 30, 41, 820), strict=True)),
    "noheal": dict(zip(_KEYS, (0.446, 0.194, 0.853, 0.316, 128, 532, 22, 318), strict=True)),
    "healed": dict(zip(_KEYS, (0.724, 0.224, 0.340, 0.270, 51, 177, 99, 673), strict=True)),
}


class SeedRun(Run):
    val_fraction = 0.0  # the research code trains on all 5,000 rows
    fixed_threshold = 0.5

    def _monitor(self) -> DriftMonitor:
        """The research system's detector: V14's window of batch means, |shift| >= 1 sd."""
        j = self.bundle.features.index("V14")
        b = self.bundle
        kw = {"window": 10, "min_batches": 3, "alpha": None, "min_effect": 1.0, **self.cfg.fidi}
        return DriftMonitor(
            b, detector=WindowFIDI(b.reference_mean[[j]], b.reference_std[[j]], features=["V14"], **kw)
        )

    def batch_metrics(self, adapter: AdapterState, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
        model = self.bundle.new_model(adapter)
        m = metrics_from_predictions(y, model.predict_proba(X) >= self.threshold, self.cfg.costs)
        return {"accuracy": m.accuracy, "f1": m.f1}

    def heal_on_batch(
        self, b: int, X: np.ndarray, y: np.ndarray, pre: dict[str, float]
    ) -> tuple[str, dict[str, float]]:
        """The research code heals on the batch with its own labels and judges the result on
        that batch too; its first post-heal metrics are the quality baseline."""
        healer, watch = self.healer, self.healer.watch
        job = healer.job_for(HealBatch(X, y))
        result = healer.run(job)
        post = self.batch_metrics(result.adapter, X, y)
        events: list[HealerEvent] = [healer.finish(job, result, pre, post)]
        if watch.baseline_f1 is None:
            watch.set_baseline(post["accuracy"], post["f1"])
        watch.update(post["accuracy"], post["f1"])
        rollback = healer.check_rollback()
        if rollback is not None:
            events.append(rollback)
        action, terms = self.record(b, events)
        return action or "monitor", terms

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
            self.record_alerts(b, self.monitor.add_transactions(X[:, [j]]))
            n_conf = int(self.rules.conflicts(X, p, self.rules.fires(X)).sum())
            pre = metrics_from_predictions(y, p >= self.threshold, cfg.costs)
            row: dict[str, Any] = {
                "batch": b,
                "fidi_index": self.monitor.fidi.index,
                "fidi_top_feature": "V14",
                "conflicts": n_conf,
                **batch_metrics("noheal", y, ps, self.threshold, cfg.costs),
                **batch_metrics("pre", y, p, self.threshold, cfg.costs),
            }
            action, terms = "monitor", dict[str, float]()
            if self.monitor.fidi.in_drift or n_conf >= cfg.conflicts_per_100 * len(y) / 100:
                action, terms = self.heal_on_batch(b, X, y, {"accuracy": pre.accuracy, "f1": pre.f1})
            else:
                self.healer.watch.update(pre.accuracy, pre.f1)
            p_after, _ = self.score(X)
            row.update(batch_metrics("healed", y, p_after, self.threshold, cfg.costs))
            row.update(
                state=self.state(action),
                action=action,
                adapter_version=self.healer.version,
                **{f"loss_{k}": v for k, v in terms.items()},
            )
            self.rows.append(row)
            self.say(
                f"batch {b:3d}  FIDI {self.monitor.fidi.index:5.2f}  conflicts {n_conf:3d}  "
                f"no-heal acc {row['noheal_accuracy']:.3f}  healed acc {row['healed_accuracy']:.3f}  {action}"
            )
        return self.finish(*self.evaluate())

    def evaluate(self) -> tuple[dict[str, Any], dict[str, Any]]:
        cfg, sc = self.cfg, self.sc
        assert sc.drift_test is not None
        D, C, t = sc.drift_test, sc.clean_test, self.threshold
        bayes_p = seed_regime(True).posterior(D.X)
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
            "drift_detected_batch": self.alarm_batches[0] if self.alarm_batches else None,
        }
        return rows, extra
