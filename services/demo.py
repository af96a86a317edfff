"""`make demo`: a bundle, the embedded broker, the services as processes, a drift scenario
streamed with late labels, live progress, and a report of shadow (no heal) vs healed."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from confluent_kafka import Consumer

from services.stack import Stack, health
from shared.bundle import Bundle
from shared.data import build
from shared.errors import SelfhealError, WeightsError
from shared.evaluation import Metrics, evaluate_scores, metrics_from_predictions
from shared.experiment.plots import plot_metrics
from shared.experiment.report import format_table, gap_closed, write_csv, write_json
from shared.experiment.runner import oracle_scores
from shared.kafka import KafkaSettings, Topics, read_topic
from shared.kafka.clients import beginnings
from shared.kafka.config import consumer_config
from shared.loadgen import produce_stream
from shared.messages import Reject, decode_alert
from shared.messages.adapters import decode_adapter
from shared.model import safetensors_metadata
from shared.streamreport import DecisionLog
from shared.training import build_bundle


class Tail(threading.Thread):
    """Reads decisions and labels from the beginning into a DecisionLog, until stopped."""

    def __init__(self, settings: KafkaSettings, topics: Topics, log: DecisionLog) -> None:
        super().__init__(name="demo-tail", daemon=True)
        self.settings, self.topics, self.log = settings, topics, log
        self.stop_event = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        consumer = Consumer(consumer_config(self.settings, None))
        try:
            consumer.assign(
                beginnings(consumer, self.topics.decisions) + beginnings(consumer, self.topics.labels)
            )
            while not self.stop_event.is_set():
                msgs = [m for m in consumer.consume(2000, 0.2) if m.error() is None]
                with self.lock:
                    for m in msgs:
                        if m.topic() == self.topics.decisions:
                            self.log.add_decision(m.value(), float(m.timestamp()[1]))
                        else:
                            self.log.add_label(m.value())
        finally:
            consumer.close()


def bundle_for(scenario: str, seed: int = 42) -> Path:
    """Reuse runs/bundles/SCENARIO if it loads and has FIDI's quantiles; otherwise train it
    (a few seconds)."""
    path = Path("runs/bundles") / scenario
    try:
        if Bundle.load(path).reference_quantiles is not None:
            return path
    except SelfhealError:
        pass
    sc = build(scenario, seed=seed)
    build_bundle(
        sc.train.X, sc.train.y, sc.features, sc.rules_toml, label="Class", source=f"scenario:{scenario}"
    ).save(path)
    return path


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
    if log is None:
        log = DecisionLog()
        for m in read_topic(settings, topics.decisions, timeout=60):
            log.add_decision(m.value(), float(m.timestamp()[1]))
        for m in read_topic(settings, topics.labels, timeout=60):
            log.add_label(m.value())
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
    batches = log.batches()
    write_csv(out / "metrics.csv", batches)
    title = f"{summary.get('scenario', 'stream')} · streaming stack"
    plot_metrics(out, title, batches, None)
    write_json(out / "summary.json", summary)
    summary["table"] = format_table({**summary, "rows": summary["rows"]})
    return summary


def run_demo(
    scenario: str,
    out: Path,
    rate: float,
    label_delay: int,
    scorers: int,
    n_pre: int,
    n_post: int,
    adapt_window: int = 1000,
) -> dict[str, Any]:
    """Run the demo; returns its summary (also written to ``out/summary.json``)."""
    t0 = time.monotonic()

    def say(msg: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f}s] {msg}", flush=True)

    bundle_path = bundle_for(scenario)
    bundle = Bundle.load(bundle_path)
    sc = build(scenario, n_pre=n_pre, n_post=n_post)
    say(
        f"bundle {bundle.id} ({bundle_path}); scenario {scenario!r}: {len(sc.stream):,} transactions, "
        f"drift at {sc.stream.drift_at}, labels {label_delay} transactions late"
    )
    topics = Topics.from_env()
    stack = Stack(str(bundle_path), scorers=scorers, log_dir=out / "logs", base_port=None).start()
    log = DecisionLog(costs=bundle.costs)
    tail: Tail | None = None
    codes: dict[str, int | None] = {}
    try:
        say(f"broker {stack.settings.bootstrap_servers}; starting {', '.join(stack.procs)}")
        stack.wait_healthy()
        tail = Tail(stack.settings, topics, log)
        tail.start()
        produced = [0]
        feeder = threading.Thread(
            target=lambda: produced.__setitem__(
                0, produce_stream(stack.settings, topics, sc.stream, list(bundle.features), rate, label_delay)
            ),
            daemon=True,
        )
        feeder.start()
        last_n, last_t = 0, time.monotonic()
        deadline = None
        while True:
            time.sleep(1.0)
            with tail.lock:
                decided = len(log.decisions)
                recent = log.rows(last=1000)
            now = time.monotonic()
            tps = (decided - last_n) / (now - last_t)
            last_n, last_t = decided, now
            sh = health(stack.ports["scorer-1"]) or {}
            mon = health(stack.ports["monitor"]) or {}
            heal = health(stack.ports["healer"]) or {}
            cost = "cost: waiting for labels"
            if recent:
                nh, h = recent["noheal"].cost, recent["healed"].cost
                cost = f"cost (last 1,000 labelled) no-heal {nh:.3f} healed {h:.3f}"
            drift = "YES" if mon.get("in_drift") else "no "
            episode = "yes" if heal.get("episode") else "no "
            say(
                f"decided {decided:>6,}/{len(sc.stream):,}  {tps:7,.0f} tx/s  "
                f"adapter v{sh.get('adapter_version', '?')}  drift {drift}  episode {episode}  {cost}"
            )
            if dead := stack.dead():
                raise SelfhealError(f"{', '.join(dead)} exited; see {out}/logs/")
            if not feeder.is_alive():
                deadline = deadline or now + 120
                with tail.lock:
                    missing = len(set(sc.stream.ids.tolist()) - set(log.decisions))
                    labelled = len(log.joined()["y"])
                if missing == 0 and labelled >= len(sc.stream):
                    break
                if now > deadline:
                    raise SelfhealError(f"{missing} transactions still without a decision after 120 s")
        tail.stop_event.set()
        tail.join()
        swaps = swap_times(stack.settings, topics, bundle, log)
        index = {tx: i for i, tx in enumerate(sc.stream.ids.tolist())}
        say("training the oracle (the same architecture on the drifted labels, 2 folds)")
        extra = _scenario_rows(sc, log, index, bundle, adapt_window)
        summary = write_stream_report(
            stack.settings,
            topics,
            out,
            produced[0],
            log,
            {
                "scenario": scenario,
                "label_delay": label_delay,
                "bundle": bundle.id,
                "scorers": scorers,
                "rate": rate,
                "swap_publish_to_first_use_ms": swaps,
                "after_drift": extra,
            },
        )
    finally:
        if tail is not None:
            tail.stop_event.set()
        codes = stack.stop()
    say("stopped: " + ", ".join(f"{n} exit {c}" for n, c in codes.items()))
    print()
    print(summary["table"])
    ad = summary["after_drift"]
    if ad:
        r = ad["rows"]
        n_after = sum(r["healed"][k] for k in ("tp", "fp", "fn", "tn"))
        gap = ad["gap_closed"]
        print(
            f"from {ad['adapt_window']:,} rows after the drift point ({n_after:,} labelled rows), cost per "
            f"transaction: no-heal {r['noheal']['cost']:.3f}, healed {r['healed']['cost']:.3f}, "
            f"oracle {r['oracle']['cost']:.3f}, bayes {r['bayes']['cost']:.3f}, "
            f"all-normal {r['all_normal']['cost']:.3f}; gap closed " + ("-" if gap is None else f"{gap:.2f}")
        )
    print(
        f"transactions {summary['transactions']:,} · decided (unique ids) {summary['decided']:,} · "
        f"duplicates {summary['duplicate_decisions']}"
    )
    print(
        "adapter publish -> first decision using it (ms, by version): "
        f"{summary['swap_publish_to_first_use_ms']}"
    )
    print(
        f"wrote summary.json, metrics.csv, events.json, metrics.png to {out}/ ({time.monotonic() - t0:.0f} s)"
    )
    summary["exit_codes"] = codes
    return summary


def _scenario_rows(
    sc: Any, log: DecisionLog, index: dict[str, int], bundle: Bundle, adapt_window: int
) -> dict[str, Any]:
    """No-heal, healed, oracle, Bayes and all-normal rows over the transactions from
    ``adapt_window`` after the drift point (as the offline experiments measure), and the gap closed."""
    if sc.stream.drift_at is None:
        return {}
    point = sc.stream.drift_at
    start = min(point + adapt_window, len(sc.stream) - 1)
    keys = [k for k in log.decisions if k in log.labels and index.get(k, -1) >= start]
    if not keys:
        return {}
    pos = np.array([index[k] for k in keys])
    y = np.array([log.labels[k] for k in keys], dtype=np.float64)
    score = np.array([log.decisions[k].decision.score for k in keys])
    shadow = np.array([log.decisions[k].decision.shadow_score for k in keys])
    t, c = bundle.threshold, bundle.costs
    oracle = oracle_scores(sc.stream.X[point:], sc.stream.y[point:], bundle.config, c, seed=42)
    rows: dict[str, Metrics] = {
        "noheal": evaluate_scores(y, shadow, t, c),
        "healed": evaluate_scores(y, score, t, c),
        "oracle": evaluate_scores(y, oracle[pos - point], c.bayes_threshold, c),
        "bayes": evaluate_scores(y, sc.stream.posterior[pos], c.bayes_threshold, c),
        "all_normal": metrics_from_predictions(y, np.zeros(len(y)), c),
    }
    as_dicts = {k: v.to_dict() for k, v in rows.items()}
    return {
        "from": start,
        "drift_at": point,
        "adapt_window": adapt_window,
        "gap_closed": gap_closed(as_dicts),
        "rows": as_dicts,
    }
