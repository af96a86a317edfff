"""The paper's two learners against the chosen policy, on one stream under a feedback model.

Dal Pozzolo et al. (IEEE TNNLS 2018) keep a *feedback* learner, trained on the
investigators' verdicts alone (recent, but only on the alerts the model ranked highest),
apart from a *delayed* learner trained on the old, complete labels, and score with the
average of their posteriors. Here, offline, both are selfheal's healer on the same stream:

* **chosen**: the healer as configured (``--label-policy implied``: each cohort at the
  chargeback delay, the unlabelled as genuine): the delayed learner;
* **feedback learner**: the same healer fed only the analysts' verdicts, as they arrive,
  taken as they come (nothing else labels anything);
* **aggregated**: the average of the two learners' posteriors, row by row, decided at the
  bundle's threshold (the paper's aggregation, with its weight 0.5).

Each learner's run draws its own analysts' checks (the investigators read the alerts of
the model that runs), so the aggregate is judged on the delayed learner's windows and
labels; in the paper the aggregate itself ranks the alerts. The windows are the feedback
windows (:func:`shared.experiment.windows.feedback_spans`) of the chosen run.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from shared.data import Scenario, build
from shared.experiment.config import ExperimentConfig
from shared.experiment.delayed import DelayedRun
from shared.experiment.windows import cost_windows, feedback_spans
from shared.feedback import FeedbackModel
from shared.progress import Progress

METHODS = ("chosen", "feedback learner", "aggregated")


def feedback_only(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` with only its analysts' verdicts for labels, each used as it arrives."""
    fb = cfg.feedback
    if fb is None or fb.analyst is None:
        raise ValueError("the feedback learner needs a feedback model with analysts")
    healer = cfg.healer_config
    return replace(
        cfg, feedback=FeedbackModel(analyst=fb.analyst), healer=replace(healer, settle_ms=None, imply_ms=None)
    )


def compare(cfg: ExperimentConfig, say: Progress) -> dict[str, Any]:
    """Both learners' runs on ``cfg``'s scenario and the windows of the three methods."""
    sc: Scenario = build(cfg.scenario, seed=cfg.seed, n_pre=cfg.n_pre, n_post=cfg.stream_post)
    say("the chosen policy (the delayed learner)")
    chosen = DelayedRun(cfg, sc, say)
    chosen.run()
    say("the feedback learner: the analysts' verdicts alone, as they arrive")
    learner = DelayedRun(feedback_only(cfg), sc, say)
    learner.run()
    s, t, costs = sc.stream, chosen.threshold, cfg.costs
    point = s.drift_at if s.drift_at is not None else cfg.n_pre
    pos, y = np.arange(point, len(s)), s.y[point:]
    oracle = chosen.oracle[: len(s) - point]
    probs = {
        "chosen": chosen.probs[point:],
        "feedback learner": learner.probs[point:],
        "aggregated": (chosen.probs[point:] + learner.probs[point:]) / 2.0,
    }
    spans = feedback_spans(point, chosen.first.get("analyst"), chosen.first.get("chargeback"))
    a = cfg.feedback.analyst if cfg.feedback is not None else None
    out: dict[str, Any] = {"scenario": sc.name, "feedback": cfg.feedback.spec() if cfg.feedback else None}
    for method, p in probs.items():
        flags = {
            "noheal": chosen.shadow[point:] >= t,
            "healed": p >= t,
            "oracle": oracle >= costs.bayes_threshold,
        }
        scores = {"noheal": chosen.shadow[point:], "healed": p}
        alerts = (scores, a.capacity, a.period_ms) if a is not None else None
        out[method] = cost_windows(pos, y, flags, costs, spans, alerts)
    return out


def format_comparison(result: dict[str, Any]) -> str:
    """One row per method: per window the gap closed, P@k (frozen -> the method) and cost."""
    windows = [w for w in ("feedback", "after_chargebacks") if w in result[METHODS[0]]]
    head = "| method | " + " | ".join(f"{w}: gap closed, P@k frozen -> method, cost" for w in windows) + " |"
    lines = [head, "|---|" + "---|" * len(windows)]
    for m in METHODS:
        cells = []
        for w in windows:
            r = result[m][w]
            closed = "-" if r["gap_closed"] is None else f"{r['gap_closed']:.2f}"
            pk = r.get("p_at_k", {})
            cells.append(
                f"{closed}, {pk.get('noheal', float('nan')):.2f} -> {pk.get('healed', float('nan')):.2f}, "
                f"{r['noheal']:.3f} -> {r['healed']:.3f} (oracle {r['oracle']:.3f})"
            )
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
