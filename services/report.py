"""The stream report (``selfheal report``, and the end of ``make demo``): decisions joined
with late labels from the topics, measured as the offline experiments measure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from confluent_kafka import Message

from shared.bundle import Bundle
from shared.data import Scenario
from shared.errors import SelfhealError, WeightsError
from shared.evaluation import Metrics, evaluate_scores, metrics_from_predictions
from shared.experiment.oracle import oracle_scores
from shared.experiment.plots import plot_metrics
from shared.experiment.report import format_table, gap_closed, write_csv, write_json
from shared.experiment.windows import cost_windows, feedback_spans, label_windows
from shared.feedback import FeedbackModel
from shared.feedback_live import LiveFeedback
from shared.kafka import KafkaSettings, Topics, read_topic
from shared.messages import Reject, decode_alert
from shared.messages.adapters import decode_adapter
from shared.model import safetensors_metadata
from shared.streamreport import DecisionLog


def log_feed(
    log: DecisionLog, topics: Topics, live: LiveFeedback | None = None
) -> Callable[[list[Message], float], None]:
    """Decisions and labels into ``log`` (a decision with its record's timestamp), and each
    new decision into ``live`` (the feedback model through the stack) when given; a
    :class:`~shared.kafka.tail.TopicTail` handler."""

    def feed(msgs: list[Message], _received_ms: float) -> None:
        for m in msgs:
            if m.topic() == topics.decisions:
                d = log.add_decision(m.value(), float(m.timestamp()[1]))
                if d is not None and live is not None:
                    live.decided(d.id, d.score, d.fraud)
            elif m.topic() == topics.labels:
                log.add_label(m.value())

    return feed


def read_log(settings: KafkaSettings, topics: Topics) -> DecisionLog:
    """Every decision and label on the topics now."""
    log = DecisionLog()
    feed = log_feed(log, topics)
    for topic in (topics.decisions, topics.labels):
        feed(list(read_topic(settings, topic, timeout=60)), 0.0)
    return log


def write_stream_report(
    settings: KafkaSettings,
    topics: Topics,
    out: Path,
    produced: int | None,
    log: DecisionLog | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Rows from decisions joined with labels; summary.json, metrics.csv, metrics.png, events.json."""
    out.mkdir(parents=True, exist_ok=True)
    log = log if log is not None else read_log(settings, topics)
    rows = log.rows()
    if not rows:
        raise SelfhealError("no labelled decisions on the topics yet")
    j = log.joined()
    summary: dict[str, Any] = {
        "protocol": "stream",
        "rows": {k: v.to_dict() for k, v in rows.items()},
        "transactions": produced,
        "decided": len(log.decisions),
        "duplicate_decisions": log.duplicates,
        "labelled": len(j["y"]),
        "threshold": float(j["threshold"][0]),
        "costs": log.costs.to_dict(),
        **(extra or {}),
    }
    decoded = [decode_alert(m.value()) for m in read_topic(settings, topics.alerts)]
    alerts = [a.to_dict() for a in decoded if not isinstance(a, Reject)]
    snapshots = [
        orjson.loads(safetensors_metadata(m.value() or b"").get("snapshot", "{}"))
        for m in read_topic(settings, topics.registry)
    ]
    write_json(out / "events.json", {"alerts": alerts, "snapshots": snapshots})
    summary["estimated_vs_realised"] = estimated_vs_realised(snapshots, log)
    batches = log.batches()
    write_csv(out / "metrics.csv", batches)
    plot_metrics(out, f"{summary.get('scenario', 'stream')} · streaming stack", batches, None)
    write_json(out / "summary.json", summary)
    summary["table"] = format_table(summary)
    return summary


def estimated_vs_realised(snapshots: list[dict[str, Any]], log: DecisionLog) -> list[dict[str, Any]]:
    """Per label-free adapter that went live: the cost per transaction its gate estimated
    without a label (CBPE), and the cost its own decisions realised once labels came."""
    j = log.joined()
    flags = j["score"] >= j["threshold"]
    per_row = log.costs.per_row(j["y"], flags)
    out = []
    for snap in snapshots:
        est = (snap.get("metrics") or {}).get("estimated_cost_after")
        if snap.get("kind") != "post" or not snap.get("accepted") or est is None:
            continue
        mine = j["version"] == snap["version"]
        realised = float(per_row[mine].mean()) if mine.any() else None
        out.append(
            {
                "version": snap["version"],
                "estimated_cost": est,
                "realised_cost": realised,
                "rows": int(mine.sum()),
            }
        )
    return out


def swap_times(settings: KafkaSettings, topics: Topics, bundle: Bundle, log: DecisionLog) -> dict[str, float]:
    """Per published adapter version: ms from its publication to the first decision that used it."""
    published: dict[int, float] = {}
    for m in read_topic(settings, topics.weights):
        try:
            msg = decode_adapter(m.value() or b"", bundle.config, bundle.id)
        except WeightsError:
            continue
        published.setdefault(msg.version, float(m.timestamp()[1]))
    first_use: dict[int, float] = {}
    for d, ts in log.decisions.values():
        v = d.adapter_version
        first_use[v] = min(first_use.get(v, ts), ts)
    return {str(v): first_use[v] - t for v, t in sorted(published.items()) if v in first_use}


@dataclass(frozen=True)
class FeedbackSeen:
    """What a stream's feedback did, in stream positions: where the first label of each
    source on a drifted transaction came, and the analysts' checks per period."""

    first: dict[str, int]  # source -> the stream position (by event time) when its first label came
    k: int  # alerts checked per period (P@k)
    period_rows: float  # transactions in a period

    @classmethod
    def of(cls, live: LiveFeedback, model: FeedbackModel, event_rate: float) -> FeedbackSeen | None:
        a = model.analyst
        if a is None:
            return None
        return cls(dict(live.first), a.capacity, a.period_ms * event_rate / 1e3)


def after_drift(
    sc: Scenario,
    log: DecisionLog,
    bundle: Bundle,
    adapt_window: int,
    seed: int = 42,
    label_delay_rows: int | None = None,
    feedback: FeedbackSeen | None = None,
    nominal_at: int | None = None,
) -> dict[str, Any]:
    """No-heal, healed, oracle, Bayes and all-normal rows over the transactions from
    ``adapt_window`` after the drift point (as the offline experiments measure), and the gap
    closed; with ``label_delay_rows``, also the windows before and after the labels (with
    ``feedback``: before any label, while only analysts answer, after the chargebacks, each
    with the alerts' precision P@k). A stream that does not drift is judged from
    ``nominal_at`` (where a drift would have begun: the offline protocol's choice too), or
    not at all when it is None."""
    point = sc.stream.drift_at if sc.stream.drift_at is not None else nominal_at
    if point is None:
        return {}
    index = {tx: i for i, tx in enumerate(sc.stream.ids.tolist())}
    start = min(point + adapt_window, len(sc.stream) - 1)
    keys = [k for k in log.decisions if k in log.labels and index.get(k, -1) >= start]
    if not keys:
        return {}
    pos = np.array([index[k] for k in keys])
    y = np.array([log.labels[k] for k in keys], dtype=np.float64)
    score = np.array([log.decisions[k].decision.score for k in keys])
    shadow = np.array([log.decisions[k].decision.shadow_score for k in keys])
    t, c = bundle.threshold, bundle.costs
    oracle = oracle_scores(sc.stream.X[point:], sc.stream.y[point:], bundle.config, c, seed)
    rows: dict[str, Metrics] = {
        "noheal": evaluate_scores(y, shadow, t, c),
        "healed": evaluate_scores(y, score, t, c),
        "oracle": evaluate_scores(y, oracle[pos - point], c.bayes_threshold, c),
        "bayes": evaluate_scores(y, sc.stream.posterior[pos], c.bayes_threshold, c),
        "all_normal": metrics_from_predictions(y, np.zeros(len(y)), c),
    }
    as_dicts = {k: v.to_dict() for k, v in rows.items()}
    out = {
        "from": start,
        "drift_at": point,
        "adapt_window": adapt_window,
        "gap_closed": gap_closed(as_dicts),
        "rows": as_dicts,
    }
    if label_delay_rows is not None:
        keys = [k for k in log.decisions if k in log.labels and index.get(k, -1) >= point]
        at = np.array([index[k] for k in keys])
        flags = {
            "noheal": np.array([log.decisions[k].decision.shadow_fraud for k in keys]),
            "healed": np.array([log.decisions[k].decision.fraud for k in keys]),
            "oracle": oracle[at - point] >= c.bayes_threshold,
        }
        labels = np.array([log.labels[k] for k in keys], dtype=np.float64)
        if feedback is None:
            out["windows"] = label_windows(at, labels, flags, c, point, point + label_delay_rows)
        else:
            spans = feedback_spans(point, feedback.first.get("analyst"), feedback.first.get("chargeback"))
            scores = {
                "noheal": np.array([log.decisions[k].decision.shadow_score for k in keys]),
                "healed": np.array([log.decisions[k].decision.score for k in keys]),
                "oracle": oracle[at - point],
            }
            alerts = (scores, feedback.k, feedback.period_rows)
            out["windows"] = cost_windows(at, labels, flags, c, spans, alerts)
    return out
