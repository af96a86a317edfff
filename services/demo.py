"""`make demo`: a bundle, the embedded broker, the services as processes, a drift scenario
streamed with late labels, live progress, and a report of shadow (no heal) vs healed."""

from __future__ import annotations

import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

from services.processes import health
from services.report import after_drift, log_feed, swap_times, write_stream_report
from services.stack import Stack
from shared.bundle import Bundle
from shared.data import Scenario, build
from shared.errors import SelfhealError
from shared.experiment.windows import LABELS_SETTLE
from shared.kafka import KafkaSettings, Topics
from shared.kafka.tail import TopicTail
from shared.loadgen import produce_stream
from shared.progress import Progress
from shared.streamreport import DecisionLog
from shared.training import scenario_bundle
from shared.units import Delay


class Feeder(threading.Thread):
    """The scenario's stream onto the topics at ``rate`` (stamped at ``event_rate`` a second
    of event time), labels ``delay`` later."""

    def __init__(
        self,
        settings: KafkaSettings,
        topics: Topics,
        sc: Scenario,
        bundle: Bundle,
        rate: float,
        delay: Delay,
        event_rate: float,
    ) -> None:
        super().__init__(name="demo-feeder", daemon=True)
        self.args = (settings, topics, sc.stream, list(bundle.features), rate, delay)
        self.event_rate = event_rate
        self.produced = 0

    def run(self) -> None:
        self.produced = produce_stream(*self.args, event_rate=self.event_rate)


def run_demo(
    scenario: str,
    out: Path,
    rate: float,
    label_delay: Delay,
    scorers: int,
    n_pre: int,
    n_post: int,
    adapt_window: int = 1000,
    event_rate: float | None = None,
    label_horizon: str = "30d",
) -> dict[str, Any]:
    """Run the demo; returns its summary (also written to ``out/summary.json``). A stream too
    short for an after-labels window is lengthened: after the first post-drift label,
    ``LABELS_SETTLE`` rows and 5,000 more."""
    say = Progress(stream=sys.stdout)
    bundle_path = scenario_bundle(scenario)
    bundle = Bundle.load(bundle_path)
    event_rate = event_rate or rate
    delay_rows = label_delay.rows_at(event_rate)
    sc = demo_stream(scenario, n_pre, n_post, delay_rows)
    say(
        f"bundle {bundle.id} ({bundle_path}); scenario {scenario!r}: {len(sc.stream):,} transactions at "
        f"{rate:g}/s (event time {event_rate:g}/s), drift at {sc.stream.drift_at}, labels {label_delay} late "
        f"({delay_rows:,} transactions)"
    )
    topics = Topics.from_env()
    state = out / "state"
    shutil.rmtree(state, ignore_errors=True)  # a fresh registry and feature log for this run
    healer_args = ("--state-dir", str(state), "--label-horizon", label_horizon)
    stack = Stack(str(bundle_path), scorers, out / "logs", base_port=None, healer_args=healer_args).start()
    log = DecisionLog(costs=bundle.costs)
    tail = TopicTail(stack.settings, [topics.decisions, topics.labels], log_feed(log, topics))
    try:
        say(f"broker {stack.settings.bootstrap_servers}; starting {', '.join(stack.children)}")
        stack.wait_healthy()
        tail.start()
        feeder = Feeder(stack.settings, topics, sc, bundle, rate, label_delay, event_rate)
        feeder.start()
        watch(stack, tail, log, sc, feeder, say, out)
        tail.stop()
        extra: dict[str, Any] = {"scenario": scenario, "label_delay": str(label_delay), "bundle": bundle.id}
        extra |= {"scorers": scorers, "label_delay_rows": delay_rows, "rate": rate, "event_rate": event_rate}
        extra["swap_publish_to_first_use_ms"] = swap_times(stack.settings, topics, bundle, log)
        say("training the oracle (the same architecture on the drifted labels, 2 folds)")
        extra["after_drift"] = after_drift(sc, log, bundle, adapt_window, label_delay_rows=delay_rows)
        summary = write_stream_report(stack.settings, topics, out, feeder.produced, log, extra)
    finally:
        tail.stop()
        codes = stack.stop()
    say("stopped: " + ", ".join(f"{n} exit {c}" for n, c in codes.items()))
    print_summary(summary, out, say.elapsed)
    summary["exit_codes"] = codes
    return summary


def demo_stream(scenario: str, n_pre: int, n_post: int, delay_rows: int) -> Scenario:
    """The scenario's stream, lengthened when too short for an after-labels window."""
    if n_post < delay_rows + LABELS_SETTLE + 1000:
        n_post = delay_rows + LABELS_SETTLE + 5000
    return build(scenario, n_pre=n_pre, n_post=n_post)


def watch(
    stack: Stack, tail: TopicTail, log: DecisionLog, sc: Scenario, feeder: Feeder, say: Progress, out: Path
) -> None:
    """Live progress every second, until every transaction is decided and labelled (or a
    service dies, or 120 s pass after the last transaction was sent)."""
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
        say(f"decided {decided:>6,}/{len(sc.stream):,}  {tps:7,.0f} tx/s  {status(stack, recent)}")
        if dead := stack.dead():
            raise SelfhealError(f"{', '.join(dead)} exited; see {out}/logs/")
        if feeder.is_alive():
            continue
        deadline = deadline or now + 120
        with tail.lock:
            missing = len(set(sc.stream.ids.tolist()) - set(log.decisions))
            labelled = len(log.joined()["y"])
        if missing == 0 and labelled >= len(sc.stream):
            return
        if now > deadline:
            raise SelfhealError(f"{missing} transactions still without a decision after 120 s")


def status(stack: Stack, recent: dict[str, Any]) -> str:
    """The live adapter, drift and episode from the services' /health, and recent costs."""
    sh = health(stack.ports["scorer-1"]) or {}
    mon = health(stack.ports["monitor"]) or {}
    heal = health(stack.ports["healer"]) or {}
    cost = "cost: waiting for labels"
    if recent:
        nh, h = recent["noheal"].cost, recent["healed"].cost
        cost = f"cost (last 1,000 labelled) no-heal {nh:.3f} healed {h:.3f}"
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
        g = w["gap_closed"]
        print(
            f"{name.replace('_', ' ')} (rows {w['from']:,} to {w['to']:,}): no-heal {w['noheal']:.3f}, "
            f"healed {w['healed']:.3f}, oracle {w['oracle']:.3f}; gap closed "
            + ("-" if g is None else f"{g:.2f}")
        )
    for a in summary.get("estimated_vs_realised", []):
        realised = "n/a" if a["realised_cost"] is None else f"{a['realised_cost']:.3f}"
        print(
            f"label-free adapter v{a['version']}: estimated cost {a['estimated_cost']:.3f} before any label, "
            f"realised {realised} per transaction on its {a['rows']:,} labelled decisions"
        )
    swaps = summary["swap_publish_to_first_use_ms"]
    print(f"adapter publish -> first decision using it (ms, by version): {swaps}")
    print(f"wrote summary.json, metrics.csv, events.json, metrics.png to {out}/ ({seconds:.0f} s)")
