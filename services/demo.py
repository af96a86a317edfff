"""`make demo`: a bundle, the embedded broker, the services as processes, a drift scenario
streamed with late labels, live progress, and a report of shadow (no heal) vs healed.

Labels come as a fraud team gets them (:mod:`shared.feedback`): analysts check the top
alerts of the live decisions, unchecked fraud charges back later, the rest is implied
genuine; the healer holds each label until its transaction is as old as the chargeback
delay and takes the unlabelled as genuine then (``label_policy``). With
``feedback=None`` every transaction's true label comes ``label_delay`` later instead. The
report measures every model on the truth, which a replay knows.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.processes import health
from services.report import FeedbackSeen, after_drift, log_feed, swap_times, write_stream_report
from services.stack import Stack
from shared.bundle import Bundle
from shared.data import Scenario, build
from shared.errors import SelfhealError
from shared.evaluation import CostMatrix
from shared.experiment.windows import LABELS_SETTLE
from shared.feedback import FeedbackModel
from shared.feedback_live import LiveFeedback
from shared.kafka import KafkaSettings, Topics
from shared.kafka.clients import TrackedProducer
from shared.kafka.tail import TopicTail
from shared.loadgen import produce_stream
from shared.messages import encode_label
from shared.progress import Progress
from shared.streamreport import DecisionLog
from shared.training import scenario_bundle
from shared.units import Delay, format_duration


class Feeder(threading.Thread):
    """The scenario's stream onto the topics at ``rate`` (stamped at ``event_rate`` a second
    of event time), labels ``delay`` later (``None``: none)."""

    def __init__(
        self,
        settings: KafkaSettings,
        topics: Topics,
        sc: Scenario,
        bundle: Bundle,
        rate: float,
        delay: Delay | None,  # None: no label (the feedback model draws them)
        event_rate: float,
    ) -> None:
        super().__init__(name="demo-feeder", daemon=True)
        self.args = (settings, topics, sc.stream, list(bundle.features), rate, delay)
        self.event_rate = event_rate
        self.start_ms = time.time() * 1e3
        self.produced = 0

    @property
    def ts(self) -> np.ndarray:
        """Each transaction's event time, as :func:`produce_stream` stamps it."""
        return self.start_ms + np.arange(len(self.args[2])) * 1e3 / self.event_rate

    def run(self) -> None:
        self.produced = produce_stream(*self.args, event_rate=self.event_rate, start_ms=self.start_ms)


class FeedbackLabels(threading.Thread):
    """Labels as the feedback model draws them from the live decisions (``live``, fed by the
    demo's tail under ``lock``), onto ``labels`` once their event time has come (the newest
    decided transaction's); every label still owed once all are decided."""

    def __init__(
        self, settings: KafkaSettings, topics: Topics, live: LiveFeedback, lock: threading.Lock
    ) -> None:
        super().__init__(name="demo-feedback", daemon=True)
        self.settings, self.topic, self.live, self.lock = settings, topics.labels, live, lock
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)

    def run(self) -> None:
        producer = TrackedProducer(self.settings)
        live, n = self.live, len(self.live.ids)
        try:
            while not self._halt.is_set():
                with self.lock:
                    ended = live.released >= n
                    labels = live.rest() if ended else live.due(float(live.ts[max(live.released - 1, 0)]))
                for label in labels:
                    producer.produce(self.topic, encode_label(label), key=label.id)
                producer.poll(0)
                if ended:
                    break
                time.sleep(0.05)
        finally:
            producer.flush()
            producer.close()


@dataclass(frozen=True)
class DemoConfig:
    scenario: str = "covariate"  # a library scenario (``selfheal scenario list``) or family:SEED (drawn)
    rate: float = 300.0  # transactions a second onto the topic
    event_rate: float | None = None  # event time: transactions a second the stream is stamped at (None: rate)
    feedback: FeedbackModel | None = None  # how labels come (shared.feedback); None: all, label_delay late
    label_delay: Delay = field(default_factory=lambda: Delay(rows=5000))  # without feedback
    label_horizon: str = "30d"  # event time a transaction waits for its label in the healer's join
    # with feedback: "settled" (cohorts complete) or "implied" (at the chargeback delay)
    label_policy: str = "implied"
    scorers: int = 2  # scorer processes in one consumer group
    n_pre: int = 2000  # transactions before the drift
    n_post: int = 12000  # ... and after it (lengthened when too short for an after-labels window)
    adapt_window: int = 1000  # rows after the drift left out of the gap

    @property
    def events_per_s(self) -> float:
        return self.event_rate or self.rate

    @property
    def delay_rows(self) -> int:
        """Transactions from one to its (last) label."""
        delay = Delay(ms=self.feedback.horizon_ms) if self.feedback is not None else self.label_delay
        return delay.rows_at(self.events_per_s)

    def labels(self) -> str:
        if self.feedback is not None:
            return f"labels: {self.feedback.describe()}"
        return f"labels {self.label_delay} late ({self.delay_rows:,} transactions)"

    def healer_args(self, state: Path) -> tuple[str, ...]:
        """With feedback the healer holds each label until its cohort is complete (settled);
        ``implied``: until the chargeback delay, the unlabelled taken as genuine then."""
        args: tuple[str, ...] = ("--state-dir", str(state), "--label-horizon", self.label_horizon)
        if self.feedback is not None:
            args += ("--settle", format_duration(self.feedback.horizon_ms))
            if self.label_policy == "implied" and self.feedback.chargeback is not None:
                args += ("--imply", format_duration(self.feedback.chargeback.delay_ms))
        return args


@dataclass
class LabelPath:
    """How the demo reads the topics back and where its labels come from."""

    log: DecisionLog
    tail: TopicTail
    feedback: FeedbackLabels | None  # None: the feeder sends every label

    @classmethod
    def of(
        cls,
        cfg: DemoConfig,
        settings: KafkaSettings,
        topics: Topics,
        sc: Scenario,
        feeder: Feeder,
        costs: CostMatrix,
    ) -> LabelPath:
        read = [topics.decisions, topics.labels]
        if cfg.feedback is None:
            log = DecisionLog(costs=costs)
            return cls(log, TopicTail(settings, read, log_feed(log, topics)), None)
        truth = dict(zip(sc.stream.ids.astype(str).tolist(), sc.stream.y.astype(int).tolist(), strict=True))
        log = DecisionLog(costs=costs, labels=truth, truth_known=True)
        live = LiveFeedback(cfg.feedback, list(truth), sc.stream.y, feeder.ts, drift_at=sc.stream.drift_at)
        tail = TopicTail(settings, read, log_feed(log, topics, live))
        return cls(log, tail, FeedbackLabels(settings, topics, live, tail.lock))

    def start(self) -> None:
        self.tail.start()
        if self.feedback is not None:
            self.feedback.start()

    def stop(self) -> None:
        self.tail.stop()
        if self.feedback is not None:
            self.feedback.stop()

    def report(self) -> dict[str, Any]:
        """What the summary says of the labels."""
        if self.feedback is None:
            return {}
        live = self.feedback.live
        return {
            "feedback": live.stream.model.describe(),
            "labels_by_source": dict(self.log.label_sources),
            "feedback_skipped": live.skipped,
        }

    def seen(self, event_rate: float) -> FeedbackSeen | None:
        """Where the feedback's windows fall (None: no feedback)."""
        if self.feedback is None:
            return None
        live = self.feedback.live
        return FeedbackSeen.of(live, live.stream.model, event_rate)


def run_demo(cfg: DemoConfig, out: Path) -> dict[str, Any]:
    """Run the demo; returns its summary (also written to ``out/summary.json``)."""
    say = Progress(stream=sys.stdout)
    sc = demo_stream(cfg.scenario, cfg.n_pre, cfg.n_post, cfg.delay_rows)
    bundle_path = scenario_bundle(cfg.scenario, sc=sc)
    bundle = Bundle.load(bundle_path)
    say(
        f"bundle {bundle.id} ({bundle_path}); scenario {cfg.scenario!r}: {len(sc.stream):,} transactions at "
        f"{cfg.rate:g}/s (event time {cfg.events_per_s:g}/s), drift at {sc.stream.drift_at}; {cfg.labels()}"
    )
    topics = Topics.from_env()
    state = out / "state"
    shutil.rmtree(state, ignore_errors=True)  # a fresh registry and feature log for this run
    stack = Stack(
        str(bundle_path), cfg.scorers, out / "logs", base_port=None, healer_args=cfg.healer_args(state)
    )
    stack.start()
    delay = None if cfg.feedback is not None else cfg.label_delay
    feeder = Feeder(stack.settings, topics, sc, bundle, cfg.rate, delay, cfg.events_per_s)
    path = LabelPath.of(cfg, stack.settings, topics, sc, feeder, bundle.costs)
    try:
        say(f"broker {stack.settings.bootstrap_servers}; starting {', '.join(stack.children)}")
        stack.wait_healthy()
        path.start()
        feeder.start()
        watch(stack, path, sc, feeder, say, out)
        path.stop()
        summary = report(cfg, stack, topics, bundle, sc, path, feeder.produced, say, out)
    finally:
        path.stop()
        codes = stack.stop()
    say("stopped: " + ", ".join(f"{n} exit {c}" for n, c in codes.items()))
    print_summary(summary, out, say.elapsed)
    summary["exit_codes"] = codes
    return summary


def report(
    cfg: DemoConfig,
    stack: Stack,
    topics: Topics,
    bundle: Bundle,
    sc: Scenario,
    path: LabelPath,
    produced: int,
    say: Progress,
    out: Path,
) -> dict[str, Any]:
    log = path.log
    extra: dict[str, Any] = {
        "scenario": cfg.scenario,
        "label_delay": str(cfg.label_delay),
        "bundle": bundle.id,
    }
    extra |= {"scorers": cfg.scorers, "label_delay_rows": cfg.delay_rows, "rate": cfg.rate}
    extra |= {"event_rate": cfg.events_per_s, **path.report()}
    extra["swap_publish_to_first_use_ms"] = swap_times(stack.settings, topics, bundle, log)
    say("training the oracle (the same architecture on the drifted labels, 2 folds)")
    extra["after_drift"] = after_drift(
        sc,
        log,
        bundle,
        cfg.adapt_window,
        label_delay_rows=cfg.delay_rows,
        feedback=path.seen(cfg.events_per_s),
        nominal_at=cfg.n_pre,
    )
    return write_stream_report(stack.settings, topics, out, produced, log, extra)


def demo_stream(scenario: str, n_pre: int, n_post: int, delay_rows: int) -> Scenario:
    """The scenario's stream, lengthened when too short for an after-labels window."""
    if n_post < delay_rows + LABELS_SETTLE + 1000:
        n_post = delay_rows + LABELS_SETTLE + 5000
    return build(scenario, n_pre=n_pre, n_post=n_post)


def watch(stack: Stack, path: LabelPath, sc: Scenario, feeder: Feeder, say: Progress, out: Path) -> None:
    """Live progress every second, until every transaction is decided and labelled (with
    feedback: every label sent) (or a service dies, or 120 s pass after the last
    transaction was sent)."""
    tail, log, labels = path.tail, path.log, path.feedback
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
        rows = "decided" if log.truth_known else "labelled"
        say(f"decided {decided:>6,}/{len(sc.stream):,}  {tps:7,.0f} tx/s  {status(stack, recent, rows)}")
        if dead := stack.dead():
            raise SelfhealError(f"{', '.join(dead)} exited; see {out}/logs/")
        if feeder.is_alive():
            continue
        deadline = deadline or now + 120
        with tail.lock:
            missing = len(set(sc.stream.ids.tolist()) - set(log.decisions))
            labelled = len(log.joined()["y"])
        owed = labels.is_alive() if labels is not None else labelled < len(sc.stream)
        if missing == 0 and not owed:
            return
        if now > deadline:
            raise SelfhealError(f"{missing} transactions still without a decision after 120 s")


def status(stack: Stack, recent: dict[str, Any], rows: str = "labelled") -> str:
    """The live adapter, drift and episode from the services' /health, and recent costs."""
    sh = health(stack.ports["scorer-1"]) or {}
    mon = health(stack.ports["monitor"]) or {}
    heal = health(stack.ports["healer"]) or {}
    cost = "cost: waiting for labels"
    if recent:
        nh, h = recent["noheal"].cost, recent["healed"].cost
        cost = f"cost (last 1,000 {rows}) no-heal {nh:.3f} healed {h:.3f}"
    drift = "YES" if mon.get("in_drift") else "no "
    episode = "yes" if heal.get("episode") else "no "
    return f"adapter v{sh.get('adapter_version', '?')}  drift {drift}  episode {episode}  {cost}"


def print_summary(summary: dict[str, Any], out: Path, seconds: float) -> None:
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
    for name, w in (ad.get("windows") or {}).items() if ad else ():
        g, pk = w["gap_closed"], w.get("p_at_k")
        print(
            f"{name.replace('_', ' ')} (rows {w['from']:,} to {w['to']:,}): no-heal {w['noheal']:.3f}, "
            f"healed {w['healed']:.3f}, oracle {w['oracle']:.3f}; gap closed "
            + ("-" if g is None else f"{g:.2f}")
            + (
                ""
                if pk is None
                else f"; alert precision P@k no-heal {pk['noheal']:.2f}, healed {pk['healed']:.2f}"
            )
        )
    if summary.get("feedback"):
        sources = ", ".join(f"{k} {v:,}" for k, v in sorted(summary["labels_by_source"].items()))
        print(f"labels: {summary['feedback']}; by source: {sources}")
    for a in summary.get("estimated_vs_realised", []):
        realised = "n/a" if a["realised_cost"] is None else f"{a['realised_cost']:.3f}"
        print(
            f"label-free adapter v{a['version']}: estimated cost {a['estimated_cost']:.3f} before any label, "
            f"realised {realised} per transaction on its {a['rows']:,} labelled decisions"
        )
    swaps = summary["swap_publish_to_first_use_ms"]
    print(f"adapter publish -> first decision using it (ms, by version): {swaps}")
    print(f"wrote summary.json, metrics.csv, events.json, metrics.png to {out}/ ({seconds:.0f} s)")
