"""`make bench`: the streaming stack's measured performance, every figure from one run on
one broker, so that ratios hold on a noisy machine.

    passthrough    consume -> produce, nothing else: the limit of the Python path
    scorer x1, x2  a backlog scored by one, then two scorer processes
    latency        produce -> decision received, at fixed offered rates
    swap           adapters published while scoring: publish -> first use, batch gaps
    healing        one heal cycle; scorer throughput with a healer healing flat out
    monitor        a backlog through the monitor service (FIDI); peak memory of each service

Throughput is timed on the decisions' own timestamps, from the moment the backlog is
complete (the consumers are already in the group and consuming) to the last decision.
The children are the real services (``python -m services.cli scorer``) on topics of
their own; the passthrough is the scorers' loop (:func:`shared.kafka.runtime.batch_loop`)
with the same batch size, poll timeout, fetch wait and commit bound, and no work.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import torch
from confluent_kafka import Consumer, Message
from prometheus_client import CollectorRegistry, Counter

from services.demo import bundle_for
from services.scorer.service import ScorerConfig
from services.stack import health
from shared.bundle import Bundle
from shared.data import build
from shared.errors import SelfhealError
from shared.healing.healer import Healer, HealerConfig
from shared.kafka import EmbeddedBroker, KafkaSettings, Topics, create_topics, read_topic
from shared.kafka.broker import free_port
from shared.kafka.clients import TrackedProducer, beginnings
from shared.kafka.config import TopicSpec, consumer_config
from shared.kafka.runtime import ConsumerService, StopFlag
from shared.log import get_logger
from shared.messages import Transaction, encode_transaction
from shared.messages.adapters import encode_adapter
from shared.observability import MetricsServer, lag_gauge
from shared.registry import MemoryStore, Registry
from shared.signing import ADAPTER, KEY_ENV, Signer, new_key

DECIDED = "selfheal_scorer_decisions_total"  # the counters that say a child has done its backlog
PASSED = "selfheal_passthrough_messages_total"

TARGETS = {  # issue 5, for a 2-core machine and the embedded broker
    "scorer_tps_1_min": 50_000,
    "scorer_ratio_min": 0.5,
    "latency_p99_ms_at_10000_max": 50.0,
    "swap_publish_to_use_ms_max": 1000.0,
    "swap_gap_over_median_max": 2.0,
    "heal_cycle_ms_max": 1000.0,
    "healing_throughput_drop_max": 0.10,
}


@dataclass(frozen=True)
class BenchConfig:
    rows: int = 200_000  # backlog per throughput run
    rates: tuple[int, ...] = (1000, 10_000)  # offered transactions/s for the latency runs
    latency_seconds: float = 10.0  # per offered rate
    warmup_seconds: float = 1.0  # the first sends of each latency run are left out
    swap_rate: int = 2000  # offered rate while adapters are swapped
    swaps: int = 4  # adapters published, one every swap_every seconds
    swap_every: float = 2.0
    rounds: int = 3  # interleaved repetitions of the throughput runs (medians reported)
    quiet_steal: float = 10.0  # before each timed run, wait for a second with less CPU steal (%) ...
    quiet_patience: float = 10.0  # ... but no longer than this (seconds)
    heal_cycles: int = 10  # timed heal cycles (after one warm-up)
    scenario: str = "covariate"  # the bundle and the rows sent
    profile: bool = False  # one more scorer run under py-spy: runs/profile-scorer.txt


# -- statistics (pure, tested) ------------------------------------------------------------


def percentiles(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "n": 0.0}
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {
        "p50": round(float(p50), 2),
        "p95": round(float(p95), 2),
        "p99": round(float(p99), 2),
        "n": int(a.size),
    }


def rate_after(timestamps_ms: Sequence[float], since_ms: float) -> tuple[float, int]:
    """(messages per second, count) of the timestamps after ``since_ms``, timed from ``since_ms``
    to the last of them."""
    after = [t for t in timestamps_ms if t > since_ms]
    if len(after) < 2:
        return float("nan"), len(after)
    span = (max(after) - since_ms) / 1e3
    return (len(after) / span if span > 0 else float("nan")), len(after)


def batch_times(scored_at_ms: Sequence[float], tolerance_ms: float = 0.01) -> list[float]:
    """The distinct batch times in decisions' scoring times (a batch shares one clock reading;
    the rounding of ``latency_ms`` makes them differ by less than ``tolerance_ms``)."""
    out: list[float] = []
    for t in sorted(scored_at_ms):
        if not out or t - out[-1] > tolerance_ms:
            out.append(t)
    return out


def swap_gaps(batches: Sequence[float], start_ms: float, end_ms: float) -> list[float]:
    """Gaps between consecutive batches that overlap [start_ms, end_ms]."""
    return [b - a for a, b in pairwise(batches) if b >= start_ms and a <= end_ms]


def vm_hwm_mb(pid: int) -> float | None:
    """Peak resident memory of a live process (Linux ``VmHWM``)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def cpu_times() -> list[int]:
    """The machine's CPU times (user, nice, system, idle, iowait, irq, softirq, steal, ...)."""
    return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def steal_between(before: list[int], after: list[int]) -> float | None:
    """The share (%) of CPU time the hypervisor took between two ``cpu_times()``; None when
    the kernel does not say."""
    total = sum(after) - sum(before)
    return 100.0 * (after[7] - before[7]) / total if total > 0 and len(after) > 7 else None


def steal_pct(seconds: float = 1.0) -> float:
    """The share of CPU time the hypervisor takes from this machine, over ``seconds``."""
    before = cpu_times()
    time.sleep(seconds)
    return steal_between(before, cpu_times()) or 0.0


def wait_quiet(max_steal: float, patience: float) -> float:
    """Wait (up to ``patience`` seconds) for a second with CPU steal under ``max_steal`` %;
    returns the last second's steal."""
    deadline = time.monotonic() + patience
    steal = steal_pct()
    while steal > max_steal and time.monotonic() < deadline:
        steal = steal_pct()
    return steal


def process_cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) a process has used; 0 when unknown."""
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _function(frame: str) -> str:
    """``name (path/file.py:line)`` -> ``name (file.py)``: samples add up per function."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit('/', 1)[-1].split(':')[0].rstrip(')')})" if where else name


def profile_summary(raw: str, top: int = 15) -> dict[str, list[tuple[str, float]]]:
    """From py-spy's raw output (``frame;frame;... count`` per line): the share of samples
    in which each function is on the stack (inclusive) and at the top (self)."""
    total = 0
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_function(f) for f in stack.split(";")]
        for f in set(frames):
            inclusive[f] = inclusive.get(f, 0) + n
        own[frames[-1]] = own.get(frames[-1], 0) + n

    def share(d: dict[str, int]) -> list[tuple[str, float]]:
        ranked = sorted(d.items(), key=lambda kv: -kv[1])[:top]
        return [(name, round(100 * c / max(total, 1), 1)) for name, c in ranked]

    return {"samples": [("all", float(total))], "inclusive_pct": share(inclusive), "self_pct": share(own)}


def metric(text: str, name: str) -> float:
    """The sum of the samples of ``name`` (any labels) in Prometheus text."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


# -- the passthrough and the heal load (children) -----------------------------------------


class PassthroughMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.lag = lag_gauge("passthrough", self.registry)
        self.messages = Counter("selfheal_passthrough_messages", "Messages passed", registry=self.registry)


class PassthroughService(ConsumerService):
    """The scorer's loop with no work: every input value produced unchanged, same key."""

    fill_batches = False  # as the scorer

    def __init__(self, settings: KafkaSettings, source: str, sink: str, group: str, port: int) -> None:
        self.config = replace(ScorerConfig(), group=group, metrics_port=port)  # the scorer's settings
        self.settings, self.source, self.sink = settings, source, sink
        self.metrics = PassthroughMetrics()
        self.producer = TrackedProducer(settings, **{"linger.ms": self.config.linger_ms})
        self.log = get_logger("passthrough")
        self.messages = 0

    def inputs(self) -> list[str]:
        return [self.source]

    def consumer_overrides(self) -> dict[str, Any]:
        return {"fetch.wait.max.ms": self.config.fetch_wait_ms}

    def topic_specs(self) -> list[TopicSpec]:
        return [TopicSpec(self.source, 4), TopicSpec(self.sink, 4)]

    def handle(self, data: list[Message]) -> None:
        self.producer.produce_many(
            self.sink, [m.value() or b"" for m in data], [m.key() or b"" for m in data]
        )
        self.messages += len(data)
        self.metrics.messages.inc(len(data))

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "service": "passthrough",
            "partitions": self.assigned,
            "messages": self.messages,
        }


def heal_fixture(bundle: Bundle, scenario: str, config: HealerConfig | None = None) -> Healer:
    """A healer in a drift episode with a full default buffer of drifted rows, labels arrived
    for all but the newest 500 (what it holds when it heals in the stack)."""
    healer = Healer(bundle, Registry(MemoryStore(), bundle.id), config or HealerConfig())
    sc = build(scenario)
    s = sc.stream
    n = healer.cfg.buffer_rows
    lo = len(s) - n
    ids = [str(i) for i in s.ids[lo:]]
    healer.add_transactions(ids, s.X[lo:], [float(i) for i in range(n)])
    healer.open_episode(onset_rows=n)
    healer.add_labels(ids[: n - 500], [float(v) for v in s.y[lo : len(s) - 500]])
    return healer


def heal_once(healer: Healer) -> float:
    """One heal cycle (prepare, run, finish); its wall time in ms."""
    t = time.perf_counter()
    job = healer.job_for(healer.buffer.snapshot(since=healer.episode.start if healer.episode else 0))
    healer.finish(job, healer.run(job))
    return (time.perf_counter() - t) * 1e3


def heal_load(bundle_path: str, scenario: str, port: int) -> None:
    """Heal back to back until SIGTERM, at the healer service's priority (a child); /health
    on ``port`` says how many cycles ran."""
    from services.stack import background_priority

    background_priority()
    torch.set_num_threads(1)  # as in the healer service
    stop = StopFlag()
    healer = heal_fixture(Bundle.load(bundle_path), scenario)
    cycles = 0
    server = MetricsServer(CollectorRegistry(), lambda: {"status": "ok", "cycles": cycles}, port).start()
    try:
        while not stop.is_set():
            heal_once(healer)
            cycles += 1
    finally:
        server.stop()


# -- children -------------------------------------------------------------------------------


class Child:
    """A service as a child process on the bench's topics; /health and /metrics on ``port``."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name, self.port = name, free_port()
        out = (log_dir / f"{name}.log").open("ab")
        cmd = [sys.executable, *args, "--metrics-port", str(self.port)]
        self.proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603

    def health(self) -> dict[str, Any] | None:
        return health(self.port)

    def metrics(self) -> str:
        """Its /metrics text; empty when it does not answer in time (a busy or starved child)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
                return str(r.read().decode())
        except OSError:
            return ""

    def wait(self, ready: Callable[[dict[str, Any]], bool], what: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SelfhealError(f"{self.name} exited with {self.proc.returncode} before {what}")
            h = self.health()
            if h is not None and ready(h):
                return
            time.sleep(0.1)
        raise SelfhealError(f"{self.name}: no {what} after {timeout:.0f} s")

    def hwm_mb(self) -> float | None:
        return vm_hwm_mb(self.proc.pid)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def assigned(h: dict[str, Any]) -> bool:
    return int(h.get("partitions", 0)) > 0


# -- the bench ------------------------------------------------------------------------------


class Bench:
    def __init__(self, cfg: BenchConfig, out: Path, progress: Callable[[str], None]) -> None:
        self.cfg, self.out, self.say = cfg, out, progress
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.settings = KafkaSettings.from_env()
        self.results: dict[str, Any] = {}
        self.rss: dict[str, float] = {}
        self.runs = 0
        self.broker_pid: int | None = None
        self.key = new_key()  # the services' adapter signing key for this run
        self.signer = Signer(self.key.encode())

    # -- plumbing
    def topics(self, phase: str) -> Topics:
        self.runs += 1
        p = f"bench{os.getpid()}.{self.runs}.{phase}"
        t = Topics(
            transactions=f"{p}.transactions",
            decisions=f"{p}.decisions",
            labels=f"{p}.labels",
            alerts=f"{p}.alerts",
            weights=f"{p}.weights",
            registry=f"{p}.registry",
            dlq=f"{p}.dlq",
        )
        create_topics(self.settings, t.specs(self.settings.replication))
        return t

    def env(self, topics: Topics) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.settings.bootstrap_servers or "",
            KEY_ENV: self.key,
            **topics.to_env(),
        }

    def service(self, kind: str, topics: Topics, name: str, *extra: str) -> Child:
        args = ["-m", "services.cli", kind, "--bundle", str(self.bundle_path), *extra]
        return Child(name, args, self.env(topics), self.logs)

    def note_rss(self, role: str, child: Child) -> None:
        mb = child.hwm_mb()
        if mb is not None:
            self.rss[role] = max(self.rss.get(role, 0.0), mb)

    def fill(self, topic: str, prefix: str) -> float:
        """The backlog onto ``topic`` as fast as one producer goes; epoch ms when all is delivered."""
        producer = TrackedProducer(self.settings)
        values = self.payloads
        keys = [f"{prefix}-{i}" for i in range(len(values))]
        values = [v.replace(b'"id":"', f'"id":"{prefix}-'.encode(), 1) for v in values]
        producer.produce_many(topic, values, keys)
        producer.flush()
        return time.time() * 1e3

    def wait_count(self, children: list[Child], name: str, target: int, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(metric(c.metrics(), name) for c in children) >= target:
                return
            time.sleep(0.1)
        raise SelfhealError(f"{name} did not reach {target} within {timeout:.0f} s")

    # -- phases
    def passthrough(self, t: Topics, name: str) -> Child:
        """The passthrough as a child: ``t.transactions`` copied onto ``t.decisions``."""
        args = ["-m", "services.bench", "passthrough", t.transactions, t.decisions, f"{t.transactions}.g"]
        return Child(name, args, self.env(t), self.logs)

    def throughput(self) -> None:
        """Rounds of: a backlog through the passthrough, through one scorer, and through the
        same scorer with the heal load running (it is SIGSTOPped in between). Interleaved,
        so that every ratio compares runs seconds apart (this machine's CPU steal varies by
        the minute); the figures are medians over the rounds."""
        cfg = self.cfg
        tp, ts = self.topics("passthrough"), self.topics("scorer1")
        load_args = ["-m", "services.bench", "heal-load", str(self.bundle_path), cfg.scenario]
        passthrough = self.passthrough(tp, "passthrough")
        scorer = self.service("scorer", ts, "scorer1", "--group", f"{ts.transactions}.g")
        loader = Child("heal-load", load_args, self.env(ts), self.logs)
        rounds: list[dict[str, float]] = []
        try:
            passthrough.wait(assigned, "partitions")
            scorer.wait(assigned, "partitions")
            loader.wait(lambda h: h.get("cycles", 0) > 0, "heal cycles")
            loader.proc.send_signal(signal.SIGSTOP)
            for k in range(cfg.rounds):
                self.say(f"round {k + 1}/{cfg.rounds}: passthrough, scorer, scorer beside a healer")
                marks = {}
                self.quiet()
                marks[f"pt{k}"] = self.fill(tp.transactions, f"pt{k}")
                self.wait_count([passthrough], PASSED, (k + 1) * cfg.rows)
                self.quiet()
                marks[f"idle{k}"] = self.fill(ts.transactions, f"idle{k}")
                self.wait_count([scorer], DECIDED, (2 * k + 1) * cfg.rows)
                self.quiet()
                loader.proc.send_signal(signal.SIGCONT)
                time.sleep(0.5)
                marks[f"heal{k}"] = self.fill(ts.transactions, f"heal{k}")
                self.wait_count([scorer], DECIDED, (2 * k + 2) * cfg.rows)
                loader.proc.send_signal(signal.SIGSTOP)
                rounds.append(marks)
            self.note_rss("scorer", scorer)
        finally:
            loader.proc.send_signal(signal.SIGCONT)
            for c in (passthrough, scorer, loader):
                c.stop()
        out_p = self.stamps_by_prefix(tp.decisions)
        out_s = self.stamps_by_prefix(ts.decisions)
        per: dict[str, list[float]] = {"passthrough": [], "idle": [], "healing": []}
        for k, marks in enumerate(rounds):
            per["passthrough"].append(rate_after(out_p[f"pt{k}"], marks[f"pt{k}"])[0])
            per["idle"].append(rate_after(out_s[f"idle{k}"], marks[f"idle{k}"])[0])
            per["healing"].append(rate_after(out_s[f"heal{k}"], marks[f"heal{k}"])[0])
        r = self.results
        r["rounds"] = {name: [round(x) for x in xs] for name, xs in per.items()}
        r["passthrough_tps"] = round(statistics.median(per["passthrough"]))
        r["scorer_tps_1"] = round(statistics.median(per["idle"]))
        r["scorer_ratio"] = round(
            statistics.median([s / p for s, p in zip(per["idle"], per["passthrough"], strict=True)]), 3
        )
        r["scorer_tps_healing"] = round(statistics.median(per["healing"]))
        r["healing_throughput_drop"] = round(
            statistics.median([1 - h / i for h, i in zip(per["healing"], per["idle"], strict=True)]), 3
        )

    def stamps_by_prefix(self, topic: str) -> dict[str, list[float]]:
        """The timestamps of a topic's messages, by the key's prefix (before the first '-')."""
        out: dict[str, list[float]] = {}
        for m in read_topic(self.settings, topic, timeout=300):
            prefix = (m.key() or b"").split(b"-", 1)[0].decode()
            out.setdefault(prefix, []).append(float(m.timestamp()[1]))
        return out

    def two_scorers(self) -> None:
        cfg = self.cfg
        t = self.topics("scorer2")
        children = [
            self.service("scorer", t, f"scorer2-{i}", "--group", f"{t.transactions}.g") for i in range(2)
        ]
        marks = {}
        try:
            for c in children:
                c.wait(assigned, "partitions")
            for k in range(cfg.rounds):
                self.say(f"round {k + 1}/{cfg.rounds}: {cfg.rows:,} transactions through two scorers")
                self.quiet()
                marks[f"two{k}"] = self.fill(t.transactions, f"two{k}")
                self.wait_count(children, DECIDED, (k + 1) * cfg.rows)
            split = [metric(c.metrics(), "selfheal_scorer_transactions_total") for c in children]
            self.results["scorer_split_2"] = [int(x) for x in split]
            for c in children:
                self.note_rss("scorer", c)
        finally:
            for c in children:
                c.stop()
        out = self.stamps_by_prefix(t.decisions)
        rates = [rate_after(out[k], since)[0] for k, since in marks.items()]
        self.results["rounds"]["two_scorers"] = [round(x) for x in rates]
        self.results["scorer_tps_2"] = round(statistics.median(rates))

    def profile(self) -> None:
        """py-spy attached to a scorer while it works through one backlog: samples of the
        threads holding the GIL only (start-up and idle threads are not in it)."""
        self.say("profile: a scorer under py-spy")
        raw = self.out / "profile-scorer.txt"
        raw.unlink(missing_ok=True)
        t = self.topics("profile")
        scorer = self.service("scorer", t, "scorer-profiled", "--group", f"{t.transactions}.g")
        spy_bin = str(Path(sys.executable).with_name("py-spy"))
        try:
            scorer.wait(assigned, "partitions")
            spy_args = ["record", "--pid", str(scorer.proc.pid), "--gil", "--nonblocking", "--format", "raw"]
            spy = subprocess.Popen(  # noqa: S603
                [spy_bin, *spy_args, "--output", str(raw)],
                stdout=subprocess.DEVNULL,
                stderr=(self.logs / "py-spy.log").open("ab"),
            )
            time.sleep(1.0)  # attached
            since = self.fill(t.transactions, "prof")
            self.wait_count([scorer], DECIDED, self.cfg.rows)
            spy.send_signal(signal.SIGINT)  # py-spy writes what it sampled and exits
            spy.wait(60)
        finally:
            scorer.stop()
        tps = rate_after(self.stamps_by_prefix(t.decisions)["prof"], since)[0]
        self.results["profile"] = {
            "scorer_tps_sampled": round(tps),
            "raw": str(raw),
            **(profile_summary(raw.read_text()) if raw.is_file() else {}),
        }

    def heal_cycles(self) -> None:
        self.say(f"heal cycles: {self.cfg.heal_cycles} on the default buffer")
        torch.set_num_threads(1)  # as in the healer service
        healer = heal_fixture(self.bundle, self.cfg.scenario)
        heal_once(healer)  # warm-up
        ms = [heal_once(healer) for _ in range(self.cfg.heal_cycles)]
        self.results["heal_cycle_ms"] = round(statistics.median(ms), 1)
        self.results["heal_cycle_ms_max"] = round(max(ms), 1)
        self.results["heal_buffer_rows"] = healer.cfg.buffer_rows

    def latency(self) -> None:
        """Produce -> output received, through the passthrough and through a scorer, at each
        offered rate (interleaved); then the hot swap on the same scorer."""
        cfg = self.cfg
        tp, ts = self.topics("latency-passthrough"), self.topics("latency")
        passthrough = self.passthrough(tp, "passthrough-latency")
        scorer = self.service("scorer", ts, "scorer-latency", "--group", f"{ts.transactions}.g")
        try:
            passthrough.wait(assigned, "partitions")
            scorer.wait(assigned, "partitions")
            with (
                DecisionTail(self.settings, tp.decisions) as tail_p,
                DecisionTail(self.settings, ts.decisions) as tail,
            ):
                lat: dict[str, Any] = {}
                base: dict[str, Any] = {}
                for rate in cfg.rates:
                    self.say(f"latency at {rate:,} tx/s: {cfg.latency_seconds:.0f} s through each")
                    with self.steal(f"latency_{rate}"):
                        base[str(rate)] = self.latency_run(tp.transactions, tail_p, f"p{rate}", rate)
                        lat[str(rate)] = self.latency_run(ts.transactions, tail, f"l{rate}", rate)
                self.results["latency_ms"] = lat
                self.results["passthrough_latency_ms"] = base
                with self.steal("swap"):
                    self.swap(ts, tail)
            self.note_rss("scorer", scorer)
        finally:
            passthrough.stop()
            scorer.stop()

    def latency_run(self, topic: str, tail: DecisionTail, prefix: str, rate: int) -> dict[str, float]:
        self.quiet()
        sent = self.offered(topic, prefix, rate, self.cfg.latency_seconds)
        got = tail.wait_for(sent, timeout=30)
        warm = min(sent.values()) + self.cfg.warmup_seconds * 1e3
        kept = [i for i, ts in sent.items() if ts >= warm and i in got]
        out = {
            **percentiles([got[i][0] - sent[i] for i in kept]),
            "lost": sum(1 for i in sent if i not in got),
        }
        made = [got[i][2] for i in kept if got[i][2] >= 0]
        if made:  # sent -> decision made, on the scorer's clock: the rest is the way back
            made_p = percentiles(made)
            out["to_scorer_p50"], out["to_scorer_p99"] = made_p["p50"], made_p["p99"]
        return out

    def quiet(self) -> None:
        """Give the machine a chance to be quiet before a timed run (CPU steal on a shared
        host comes and goes by the minute); the steal of each phase is recorded anyway."""
        steal = wait_quiet(self.cfg.quiet_steal, self.cfg.quiet_patience)
        if steal > self.cfg.quiet_steal:
            self.say(
                f"  (CPU steal still {steal:.0f}% after {self.cfg.quiet_patience:.0f} s: measuring anyway)"
            )

    @contextmanager
    def steal(self, phase: str) -> Iterator[None]:
        """Record the share of CPU time the hypervisor took from this machine during a phase
        (steal), and the cores' worth of CPU the embedded broker used."""
        before, broker_before, t0 = cpu_times(), process_cpu_s(self.broker_pid), time.monotonic()
        try:
            yield
        finally:
            steal = steal_between(before, cpu_times())
            if steal is not None:
                self.results.setdefault("cpu_steal_pct", {})[phase] = round(steal, 1)
            if self.broker_pid:
                used = (process_cpu_s(self.broker_pid) - broker_before) / max(1e-3, time.monotonic() - t0)
                self.results.setdefault("broker_cpu_cores", {})[phase] = round(used, 2)

    def offered(
        self,
        topic: str,
        prefix: str,
        rate: int,
        seconds: float,
        during: Callable[[float], None] | None = None,
    ) -> dict[str, float]:
        """Send at ``rate``/s for ``seconds``, each transaction stamped as it is sent; ``during``
        gets the elapsed seconds after every tick. Returns {id: sent epoch ms}."""
        producer = TrackedProducer(self.settings)  # a client as librdkafka configures it (linger 5 ms)
        rows = self.rows
        features = list(self.bundle.features)
        sent: dict[str, float] = {}
        start, i, tick = time.monotonic(), 0, 0.002
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(elapsed * rate)
            while i < due:
                tx_id = f"{prefix}-{i}"
                now = time.time() * 1e3
                producer.produce(
                    topic,
                    encode_transaction(Transaction.from_row(tx_id, features, rows[i % len(rows)], now)),
                    key=tx_id,
                )
                sent[tx_id] = now
                i += 1
            producer.poll(0)
            if during is not None:
                during(elapsed)
            time.sleep(tick)
        producer.flush()
        return sent

    def swap(self, t: Topics, tail: DecisionTail) -> None:
        cfg = self.cfg
        self.say(f"hot swap: {cfg.swaps} adapters at {cfg.swap_rate:,} tx/s")
        producer = TrackedProducer(self.settings)
        gen = torch.Generator().manual_seed(0)
        payloads = {  # built and signed before the clock runs: the sender must not pause at a swap
            1000 + k: encode_adapter(
                {n: w + 0.01 * torch.randn(w.shape, generator=gen) for n, w in self.adapter.items()},
                self.bundle.id,
                1000 + k,
                parent=999 + k,
            )
            for k in range(cfg.swaps)
        }
        signatures = {v: self.signer.headers(ADAPTER, self.bundle.id, data) for v, data in payloads.items()}
        published: dict[int, float] = {}

        def publish(elapsed: float) -> None:
            k = len(published)
            if k < cfg.swaps and elapsed >= (k + 1) * cfg.swap_every:
                published[1000 + k] = time.time() * 1e3
                v = 1000 + k
                producer.produce(t.weights, payloads[v], key=self.bundle.id, headers=signatures[v])
                producer.poll(0)

        seconds = (cfg.swaps + 1) * cfg.swap_every
        self.quiet()
        sent = self.offered(t.transactions, "swap", cfg.swap_rate, seconds, during=publish)
        producer.flush()
        got = tail.wait_for(sent, timeout=30)
        scored = {i: sent[i] + got[i][2] for i in sent if i in got}  # scorer clock: ts + latency_ms
        version_of = {i: got[i][1] for i in scored}
        batches = batch_times(list(scored.values()))
        gaps = [b - a for a, b in pairwise(batches)]
        to_use, worst, during = [], 0.0, set()
        for version, at in published.items():
            first = min((s for i, s in scored.items() if version_of[i] == version), default=None)
            if first is None:
                continue  # a newer adapter overtook it
            to_use.append(first - at)
            worst = max([worst, *swap_gaps(batches, at, first)])
            during |= {a for a, b in pairwise(batches) if b >= at and a <= first}
        outside = [b - a for a, b in pairwise(batches) if a not in during]
        self.results["batch_max_gap_ms_outside_swaps"] = round(max(outside), 2) if outside else None
        self.results["swap_publish_to_use_ms"] = round(max(to_use), 1) if to_use else None
        self.results["swap_publish_to_use_ms_all"] = [round(x, 1) for x in to_use]
        self.results["swap_max_gap_ms"] = round(worst, 2)
        self.results["batch_median_gap_ms"] = round(statistics.median(gaps), 2) if gaps else None
        self.results["swaps_used"] = len(to_use)

    def monitor(self) -> None:
        t = self.topics("monitor")
        monitor = self.service("monitor", t, "monitor")
        healer = self.service("healer", t, "healer")
        try:
            monitor.wait(assigned, "partitions")
            healer.wait(assigned, "partitions")
            self.say(f"monitor: {self.cfg.rows:,} transactions through FIDI")
            done = self.fill(t.transactions, "m")
            polls: list[tuple[float, float]] = []
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                text = monitor.metrics()
                if not text:
                    continue
                n = metric(text, "selfheal_monitor_transactions_total")
                polls.append((time.time() * 1e3, n))
                if n >= self.cfg.rows:
                    break
                time.sleep(0.05)
            at_done = next((n for ts, n in polls if ts >= done), polls[-1][1])
            end_ts = polls[-1][0]
            self.results["monitor_tps"] = round((self.cfg.rows - at_done) / max(1e-3, (end_ts - done) / 1e3))
            self.wait_count([healer], "selfheal_healer_transactions_total", self.cfg.rows)
            self.note_rss("monitor", monitor)
            self.note_rss("healer", healer)
        finally:
            monitor.stop()
            healer.stop()

    # -- all of it
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        self.bundle_path = bundle_for(cfg.scenario)
        self.bundle = Bundle.load(self.bundle_path)
        self.adapter = self.bundle.adapter_state
        sc = build(cfg.scenario)
        self.rows = [row.tolist() for row in sc.stream.X]
        features = list(self.bundle.features)
        self.payloads = [
            encode_transaction(Transaction.from_row(f"{i}", features, self.rows[i % len(self.rows)]))
            for i in range(cfg.rows)
        ]
        with self.session():
            self.heal_cycles()
            with self.steal("throughput"):
                self.throughput()
            with self.steal("two_scorers"):
                self.two_scorers()
            self.latency()
            with self.steal("monitor"):
                self.monitor()
            if cfg.profile:
                self.profile()
        r = self.results
        r["rss_mb"] = self.rss
        r["config"] = asdict(cfg)
        r["machine"] = {"cpus": os.cpu_count(), "broker": "embedded" if self.embedded else "external"}
        r["targets"] = check_targets(r)
        return r

    @contextmanager
    def session(self) -> Iterator[None]:
        broker = None
        self.embedded = not self.settings.bootstrap_servers
        if self.embedded:
            broker = EmbeddedBroker(log_path=self.logs / "broker.log").start()
            self.settings = self.settings.with_bootstrap(broker.bootstrap)
            self.broker_pid = broker.pid
        try:
            yield
        finally:
            if broker is not None:
                self.rss["broker"] = vm_hwm_mb(broker.pid or 0) or 0.0
                broker.stop()


class DecisionTail:
    """Reads a decisions topic from the beginning on a thread: {id: (received epoch ms,
    adapter_version, latency_ms)} (-1 where a record has no such field: the passthrough's)."""

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self.settings, self.topic = settings, topic
        self.got: dict[str, tuple[float, int, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-tail", daemon=True)

    def __enter__(self) -> DecisionTail:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        # the instrument reads like the scorer: fetches answered within 5 ms, and a message
        # taken the moment it is there (consume(n, t) waits for n or t; poll returns with one)
        consumer = Consumer(consumer_config(self.settings, None, **{"fetch.wait.max.ms": 5}))
        try:
            consumer.assign(beginnings(consumer, self.topic))
            while not self._stop.is_set():
                first = consumer.poll(0.05)
                if first is None:
                    continue
                now = time.time() * 1e3
                for m in [first, *consumer.consume(1000, 0)]:
                    if m.error() is None:
                        d = orjson.loads(m.value() or b"{}")
                        self.got[d["id"]] = (
                            now,
                            int(d.get("adapter_version", -1)),
                            float(d.get("latency_ms", -1)),
                        )
        finally:
            consumer.close()

    def wait_for(self, ids: dict[str, float], timeout: float) -> dict[str, tuple[float, int, float]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(i in self.got for i in ids):
            time.sleep(0.05)
        return dict(self.got)


def check_targets(r: dict[str, Any]) -> dict[str, bool | None]:
    lat = r.get("latency_ms", {}).get("10000", {})
    median = r.get("batch_median_gap_ms")
    return {
        "scorer >= 50k tx/s per process": r["scorer_tps_1"] >= TARGETS["scorer_tps_1_min"],
        "scorer >= 50% of passthrough": r["scorer_ratio"] >= TARGETS["scorer_ratio_min"],
        "p99 <= 50 ms at 10k tx/s": lat.get("p99", float("inf")) <= TARGETS["latency_p99_ms_at_10000_max"],
        "publish -> use <= 1 s": (r.get("swap_publish_to_use_ms") or float("inf"))
        <= TARGETS["swap_publish_to_use_ms_max"],
        "swap gap <= 2x median": None
        if not median
        else r["swap_max_gap_ms"] <= TARGETS["swap_gap_over_median_max"] * median,
        "heal cycle <= 1 s": r["heal_cycle_ms"] <= TARGETS["heal_cycle_ms_max"],
        "healing costs scoring <= 10%": r["healing_throughput_drop"]
        <= TARGETS["healing_throughput_drop_max"],
    }


def bench_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, measured, baseline or target) for the table."""
    lat, base = r["latency_ms"], r.get("passthrough_latency_ms", {})
    steal = r.get("cpu_steal_pct", {})

    def ms(v: dict[str, float]) -> str:
        return f"{v['p50']:.0f} / {v['p95']:.0f} / {v['p99']:.0f} ms" if v else "-"

    return [
        (
            "passthrough (consume -> produce)",
            f"{r['passthrough_tps']:,} tx/s",
            "the limit of the Python path",
        ),
        (
            "scorer, 1 process",
            f"{r['scorer_tps_1']:,} tx/s ({r['scorer_ratio']:.0%} of passthrough)",
            ">= 50,000 tx/s and >= 50%",
        ),
        ("scorer, 2 processes", f"{r['scorer_tps_2']:,} tx/s", "-"),
        *[
            (f"latency p50/p95/p99 at {int(k):,} tx/s", ms(v), f"passthrough {ms(base.get(k, {}))}")
            for k, v in lat.items()
        ],
        ("publish -> first decision using it (worst)", f"{r['swap_publish_to_use_ms']} ms", "<= 1,000 ms"),
        (
            "batch gap in a swap / outside swaps / median",
            f"{r['swap_max_gap_ms']} / {r['batch_max_gap_ms_outside_swaps']} / {r['batch_median_gap_ms']} ms",
            "in a swap <= 2x median",
        ),
        ("heal cycle, median / max", f"{r['heal_cycle_ms']} / {r['heal_cycle_ms_max']} ms", "<= 1,000 ms"),
        (
            "scorer beside a healer healing flat out",
            f"{r['scorer_tps_healing']:,} tx/s ({-r['healing_throughput_drop']:+.1%})",
            "within 10% of idle",
        ),
        ("monitor (FIDI)", f"{r['monitor_tps']:,} tx/s", "-"),
        ("peak RSS", ", ".join(f"{k} {v:.0f} MB" for k, v in r["rss_mb"].items()), "-"),
        ("CPU steal by phase", ", ".join(f"{k} {v}%" for k, v in steal.items()), "0% on a quiet machine"),
    ]


def format_bench(r: dict[str, Any]) -> str:
    rows = bench_rows(r)
    width = max(len(a) for a, _, _ in rows)
    lines = [f"{a:<{width}}  {b}" for a, b, _ in rows]
    lines.append("")
    lines += [
        f"{'PASS' if ok else ('n/a ' if ok is None else 'FAIL')}  {name}" for name, ok in r["targets"].items()
    ]
    return "\n".join(lines)


def markdown_bench(r: dict[str, Any]) -> str:
    lines = ["| figure | measured | baseline / target |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in bench_rows(r)]
    return "\n".join(lines)


def run_bench(out: str | Path, cfg: BenchConfig | None = None, quiet: bool = False) -> dict[str, Any]:
    out = Path(out)
    started = time.monotonic()

    def say(msg: str) -> None:
        if not quiet:
            print(f"[{time.monotonic() - started:6.1f} s] {msg}", flush=True)

    results = Bench(cfg or BenchConfig(), out, say).run()
    results["seconds"] = round(time.monotonic() - started, 1)
    (out / "bench.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    (out / "bench.md").write_text(markdown_bench(results) + "\n")
    return results


def _child_main(argv: list[str]) -> int:
    """The children that are not services: ``passthrough SOURCE SINK GROUP --metrics-port P``
    and ``heal-load BUNDLE SCENARIO``."""
    if argv[0] == "passthrough":
        source, sink, group, _, port = argv[1:6]
        stop = StopFlag()
        PassthroughService(KafkaSettings.from_env(), source, sink, group, int(port)).run(stop)
        return 0
    if argv[0] == "heal-load":
        heal_load(argv[1], argv[2], int(argv[4]))
        return 0
    raise SystemExit(f"unknown child {argv[0]!r}")


if __name__ == "__main__":
    raise SystemExit(_child_main(sys.argv[1:]))
