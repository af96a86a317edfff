"""The delayed-labels protocol: a stream in order, ``n_pre`` clean rows then drift, labels
arriving ``label_delay`` transactions after their decision.

Every batch goes the way it goes through the stack: the scorer's core scores it with the
adapter live now (and the shadow), the monitor's core turns it into alerts, and the healer
takes transactions, decisions, alerts and arrived labels in the order the healer service
handles them, then its worker takes one step (heals inline here, on a thread in the
service). An accepted heal or a rollback goes live before the next batch, as a hot swap
does. Every row is scored by the adapter live when it arrived (prequential), and the
headline rows cover the stream from ``adapt_window`` rows after the drift point to the end.
Event time is the row's position (one transaction per millisecond); a label carries the
event time it arrives at. Two more windows split the story at the labels
(``windows`` in the summary, :mod:`shared.experiment.windows`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from shared.evaluation import Metrics, evaluate_scores, metrics_from_predictions
from shared.experiment.base import Run, batch_metrics
from shared.experiment.config import ExperimentResult
from shared.experiment.oracle import oracle_scores
from shared.experiment.windows import cost_windows, feedback_spans, label_windows
from shared.feedback import FeedbackStream
from shared.healing.worker import HealWorker


class DelayedRun(Run):
    def run(self) -> ExperimentResult:
        cfg, s = self.cfg, self.sc.stream
        n = len(s)
        self.probs = np.zeros(n, dtype=np.float32)
        self.shadow = np.zeros(n, dtype=np.float32)
        self.ts = np.arange(n, dtype=np.float64)  # event time: row position, in ms
        self.worker = HealWorker(self.healer)  # inline
        self.arrived = 0  # labels of rows [0, arrived) have arrived
        self.labels = s.y.copy()  # as they arrive: a poisoned burst arrives flipped
        if cfg.poison is not None:
            first, count = cfg.poison
            self.labels[first : first + count] = 1 - self.labels[first : first + count]
        mode = "no labels (label-free)" if cfg.label_free else f"labels {cfg.label_delay} transactions late"
        self.feedback = FeedbackStream(cfg.feedback, cfg.seed) if cfg.feedback is not None else None
        self.first: dict[str, int] = {}  # source -> the row at which its first post-drift label arrived
        if cfg.feedback is not None:
            mode = f"feedback: {cfg.feedback.describe()} (a transaction a ms)"
        self.say(f"delayed protocol on {self.sc.name!r}: {n:,} rows, drift at {s.drift_at}, {mode}")
        for b, start in enumerate(range(0, n, cfg.batch_size), start=1):
            self.batch(b, start, min(start + cfg.batch_size, n))
            if b % 10 == 0:
                self.progress(b, math.ceil(n / cfg.batch_size))
        return self.finish(*self.evaluate())

    def batch(self, b: int, start: int, end: int) -> None:
        s, healer, t = self.sc.stream, self.healer, self.threshold
        X, y, ids = s.X[start:end], s.y[start:end], [str(i) for i in s.ids[start:end]]
        ts = self.ts[start:end].tolist()
        version = self.core.live.version
        p, ps = self.score(X)
        self.probs[start:end], self.shadow[start:end] = p, ps
        conflicts = self.rules.conflicts(X, p)
        alerts = self.monitor.add_transactions(X, ts) + self.monitor.add_conflicts(conflicts.tolist())
        self.record_alerts(b, alerts)
        if self.feedback is not None:
            rows = np.arange(start, end)
            self.feedback.decided(rows, self.ts[start:end], p, p >= t, self.labels[start:end])
        healer.add_transactions(ids, X, ts)
        healer.add_decisions(ids, (p >= t).tolist(), [version] * len(ids), (ps >= t).tolist())
        for a in alerts:
            healer.on_alert(a)
        self.deliver_labels(end)
        waiting = healer.episode is not None
        action, terms = self.record(b, self.worker.step())
        action = action or ("waiting for labels" if waiting else "monitor")
        self.rows.append(
            {
                "batch": b,
                "start": start,
                "end": end,
                "fidi_index": self.monitor.fidi.index,
                "fidi_top_feature": self.monitor.fidi.top_feature or "",
                "drifting_features": len(self.monitor.fidi.drifting_features),
                "conflicts": int(conflicts.sum()),
                "conflict_rate": self.monitor.conflicts.rate,
                "labels_arrived": self.arrived,
                **batch_metrics("noheal", y, ps, t, self.cfg.costs),
                **batch_metrics("healed", y, p, t, self.cfg.costs),
                "state": self.state(action),
                "action": action,
                "adapter_version": healer.version,
                "scored_by": version,
                "live_f1": healer.watch.rolling_f1,
                **{f"loss_{k}": v for k, v in terms.items()},
            }
        )

    def deliver_labels(self, end: int) -> None:
        """The labels whose delay has passed once row ``end`` is decided."""
        if self.cfg.label_free:
            return
        if self.feedback is not None:
            self.deliver_feedback(end)
            return
        now = max(self.arrived, end - self.cfg.label_delay)
        if now > self.arrived:
            ids = [str(i) for i in self.sc.stream.ids[self.arrived : now]]
            self.healer.add_labels(ids, self.labels[self.arrived : now].tolist(), [float(end)] * len(ids))
            self.arrived = now

    def deliver_feedback(self, end: int) -> None:
        """The labels the feedback model has made due once row ``end`` is decided."""
        assert self.feedback is not None
        got = self.feedback.due(float(end))
        if not len(got):
            return
        s = self.sc.stream
        ids = [str(s.ids[r]) for r in got.rows]
        self.healer.add_labels(ids, got.labels.tolist(), got.at.tolist(), got.sources)
        self.arrived += len(got)
        point = s.drift_at if s.drift_at is not None else self.cfg.n_pre
        for r, src in zip(got.rows.tolist(), got.sources, strict=True):
            if r >= point and src not in self.first:
                self.first[src] = end

    def windows(self, oracle: np.ndarray, point: int) -> dict[str, dict[str, Any]]:
        """Costs before the first post-drift label arrives and after it has settled."""
        cfg, s, t = self.cfg, self.sc.stream, self.threshold
        if cfg.feedback is not None:
            return self.feedback_windows(oracle, point)
        first_label = len(s) if cfg.label_free else point + cfg.label_delay
        pos = np.arange(point, len(s))
        flags = {
            "noheal": self.shadow[point:] >= t,
            "healed": self.probs[point:] >= t,
            "oracle": oracle >= cfg.costs.bayes_threshold,
        }
        return label_windows(pos, s.y[point:], flags, cfg.costs, point, first_label)

    def feedback_windows(self, oracle: np.ndarray, point: int) -> dict[str, dict[str, Any]]:
        """Costs (and alert precision) before any label, while only analysts' feedback
        comes, and once chargebacks come too."""
        cfg, s, t = self.cfg, self.sc.stream, self.threshold
        assert cfg.feedback is not None
        pos = np.arange(point, len(s))
        flags = {
            "noheal": self.shadow[point:] >= t,
            "healed": self.probs[point:] >= t,
            "oracle": oracle >= cfg.costs.bayes_threshold,
        }
        spans = feedback_spans(point, self.first.get("analyst"), self.first.get("chargeback"))
        a = cfg.feedback.analyst
        scores = {"noheal": self.shadow[point:], "healed": self.probs[point:], "oracle": oracle}
        alerts = (scores, a.capacity, a.period_ms) if a is not None else None
        return cost_windows(pos, s.y[point:], flags, cfg.costs, spans, alerts)

    def estimated_vs_realised(self) -> list[dict[str, Any]]:
        """Per label-free adapter that went live: the cost per transaction its gate estimated
        (CBPE, no label), and the cost it realised on the rows it scored."""
        out = []
        for e in self.events:
            if e["type"] != "heal" or e.get("heal_kind") != "label_free" or not e["accepted"]:
                continue
            scored = [r["healed_cost"] for r in self.rows if r["scored_by"] == e["version"]]
            out.append(
                {
                    "version": e["version"],
                    "batch": e["batch"],
                    "estimated_cost": e["estimated_cost"],
                    "realised_cost": float(np.mean(scored)) if scored else None,
                    "rows": len(scored) * self.cfg.batch_size,
                }
            )
        return out

    def progress(self, b: int, batches: int) -> None:
        heals = f"{len(self.registry.post_heal())}/{self.registry.n_heals}"
        self.say(
            f"batch {b:3d}/{batches}  adapter v{self.healer.version}  "
            f"FIDI {self.monitor.fidi.index:5.2f}  labels {self.arrived:,}  heals {heals}"
        )

    def evaluate(self) -> tuple[dict[str, Metrics], dict[str, Any]]:
        cfg, s, t = self.cfg, self.sc.stream, self.threshold
        point = s.drift_at if s.drift_at is not None else cfg.n_pre
        e0 = min(point + cfg.adapt_window, len(s) - 1)
        sl = slice(e0, len(s))
        y = s.y[sl]
        self.say("training the oracle: the same architecture on the drifted labels (2 folds)")
        oracle = oracle_scores(s.X[point:], s.y[point:], self.bundle.config, cfg.costs, cfg.seed)
        self.oracle = oracle  # from the drift point on
        C = self.sc.clean_test
        rows = {
            "clean": evaluate_scores(C.y, self.core.score(C.X)[1], t, cfg.costs),
            "noheal": evaluate_scores(y, self.shadow[sl], t, cfg.costs),
            "healed": evaluate_scores(y, self.probs[sl], t, cfg.costs),
            "all_normal": metrics_from_predictions(y, np.zeros(len(y)), cfg.costs),
            "oracle": evaluate_scores(y, oracle[e0 - point :], cfg.costs.bayes_threshold, cfg.costs),
            "bayes": evaluate_scores(y, s.posterior[sl], cfg.costs.bayes_threshold, cfg.costs),
        }
        first_alarm = self.monitor.alarm_rows[0] if self.monitor.alarm_rows else None  # a row
        detection = None
        if first_alarm is not None and s.drift_at is not None:
            detection = first_alarm - s.drift_at
        extra = {
            "eval": {
                "from": e0,
                "to": len(s),
                "rows": len(y),
                "drift_at": s.drift_at,
                "adapt_window": cfg.adapt_window,
            },
            "drift_first_alarm_row": first_alarm,
            "detection_delay_rows": detection,
            "false_alarm": bool(
                first_alarm is not None and (s.drift_at is None or first_alarm <= s.drift_at)
            ),
            "labels": self.healer.join.stats(),
            "windows": self.windows(oracle[: len(s) - point], point),
            "estimated_vs_realised": self.estimated_vs_realised(),
        }
        return rows, extra
