"""What every phase of the benchmark uses: the broker, topics of its own per run, the
services as children, a backlog, counters to wait on, and the machine's CPU steal."""

from __future__ import annotations

import os
import shutil
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from services.bench.config import BenchConfig
from services.bench.loads import heal_fixture, heal_once
from services.bench.measure import metric
from services.bench.probes import cpu_times, process_cpu_s, steal_between, wait_quiet
from services.processes import Child, vm_hwm_mb
from shared.bundle import Bundle
from shared.data import build
from shared.errors import SelfhealError
from shared.kafka import EmbeddedBroker, KafkaSettings, Topics, TrackedProducer, create_topics, read_topic
from shared.kafka.timeline import ENV as TIMELINE_ENV
from shared.messages import Transaction, encode_transaction
from shared.messages.adapters import encode_adapter
from shared.signing import ADAPTER, KEY_ENV, Signer, new_key
from shared.training import scenario_bundle

DECIDED = "selfheal_scorer_decisions_total"  # the counter that says a scorer has done its backlog


class Harness:
    def __init__(self, cfg: BenchConfig, out: Path, say: Callable[[str], None]) -> None:
        self.cfg, self.out, self.say = cfg, out, say
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.timelines = self.logs / "timeline"  # the loop timelines of the latency phase's children
        shutil.rmtree(self.timelines, ignore_errors=True)  # a run reads its own only
        self.windows: dict[str, list[tuple[float, float]]] = {}  # "role:phase" -> (monotonic start, end)s
        self._cpu_runs: dict[str, list[dict[str, float]]] = {}
        self.settings = KafkaSettings.from_env()
        self.results: dict[str, Any] = {}
        self.rss: dict[str, float] = {}
        self.runs = 0
        self.broker_pid: int | None = None
        self.embedded = not self.settings.bootstrap_servers
        self.key = new_key()  # the services' adapter signing key for this run
        self.signer = Signer(self.key.encode())
        self.bundle_path = scenario_bundle(cfg.scenario)
        self.bundle = Bundle.load(self.bundle_path)
        rows = [row.tolist() for row in build(cfg.scenario).stream.X]
        features = list(self.bundle.features)
        self.payloads = [
            encode_transaction(Transaction.from_row(f"{i}", features, rows[i % len(rows)]))
            for i in range(cfg.rows)
        ]

    @contextmanager
    def session(self) -> Iterator[None]:
        """The embedded broker for the run (unless ``KAFKA_BOOTSTRAP_SERVERS`` names one)."""
        broker = None
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

    def topics(self, phase: str) -> Topics:
        """Fresh topics for one run."""
        self.runs += 1
        p = f"bench{os.getpid()}.{self.runs}.{phase}"
        t = Topics(**{name: f"{p}.{name}" for name in Topics().__dict__})
        create_topics(self.settings, self.settings.specs(t))
        return t

    def env(self, topics: Topics | None = None, timeline: bool = False) -> dict[str, str]:
        """A child's environment: the broker, the signing key, the topics; with ``timeline``,
        its loop timeline written to ``logs/timeline`` when it stops."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.settings.bootstrap_servers or "",
            KEY_ENV: self.key,
            **(topics.to_env() if topics is not None else {}),
            **({TIMELINE_ENV: str(self.timelines)} if timeline else {}),
        }

    def service(self, kind: str, topics: Topics, name: str, *extra: str, timeline: bool = False) -> Child:
        env = self.env(topics, timeline)
        return Child.service(kind, self.bundle_path, env, self.logs, name, *extra)

    def scorer(self, topics: Topics, name: str, timeline: bool = False) -> Child:
        """A scorer in a group of its own on ``topics``."""
        return self.service("scorer", topics, name, "--group", f"{topics.transactions}.g", timeline=timeline)

    def passthrough(self, t: Topics, name: str, timeline: bool = False) -> Child:
        """The passthrough as a child: ``t.transactions`` copied onto ``t.decisions``."""
        args = ["-m", "services.bench", "passthrough", t.transactions, t.decisions, f"{t.transactions}.g"]
        return Child(name, args, self.env(t, timeline), self.logs)

    def note_rss(self, role: str, child: Child) -> None:
        mb = child.hwm_mb()
        if mb is not None:
            self.rss[role] = max(self.rss.get(role, 0.0), mb)

    def fill(self, topic: str, prefix: str) -> float:
        """The backlog onto ``topic`` as fast as one producer goes; epoch ms when all is delivered."""
        producer = TrackedProducer(self.settings)
        keys = [f"{prefix}-{i}" for i in range(len(self.payloads))]
        values = [v.replace(b'"id":"', f'"id":"{prefix}-'.encode(), 1) for v in self.payloads]
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

    def stamps_by_prefix(self, topic: str) -> dict[str, list[float]]:
        """The timestamps of a topic's messages, by the key's prefix (before the first '-')."""
        out: dict[str, list[float]] = {}
        for m in read_topic(self.settings, topic, timeout=300):
            prefix = (m.key() or b"").split(b"-", 1)[0].decode()
            out.setdefault(prefix, []).append(float(m.timestamp()[1]))
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

    @contextmanager
    def cpu_of(self, phase: str, pids: dict[str, int]) -> Iterator[dict[str, float]]:
        """The cores' worth of CPU each process used during a phase: the broker, ``pids`` and
        this process (the instruments reading the outputs); the caller adds what it measured
        itself (the load generator) to the dict it gets. The mean over the phase's rounds
        goes to ``results["cpu_cores"][phase]``."""
        pids = {**pids, "broker": self.broker_pid or 0}
        before = {name: process_cpu_s(pid) for name, pid in pids.items()}
        me, t0 = time.process_time(), time.monotonic()
        extra: dict[str, float] = {}
        try:
            yield extra
        finally:
            span = max(1e-3, time.monotonic() - t0)
            used = {name: (process_cpu_s(pid) - before[name]) / span for name, pid in pids.items()}
            used = {**used, "instruments": (time.process_time() - me) / span, **extra}
            self._cpu_runs.setdefault(phase, []).append(used)
            runs = self._cpu_runs[phase]
            mean = {k: sum(u.get(k, 0.0) for u in runs) / len(runs) for k in used}
            self.results.setdefault("cpu_cores", {})[phase] = {k: round(v, 2) for k, v in mean.items()}

    def signed_adapter(self, version: int, seed: int = 0) -> tuple[bytes, list[tuple[str, bytes]]]:
        """An adapter for the bundle (its own, moved a little), as the healer publishes it:
        the payload and its signature headers."""
        gen = torch.Generator().manual_seed(seed)
        state = {
            n: w + 0.01 * torch.randn(w.shape, generator=gen) for n, w in self.bundle.adapter_state.items()
        }
        data = encode_adapter(state, self.bundle.id, version, parent=version - 1)
        return data, self.signer.headers(ADAPTER, self.bundle.id, data)

    def heal_cycles(self) -> None:
        self.say(f"heal cycles: {self.cfg.heal_cycles} on the default buffer")
        torch.set_num_threads(1)  # as in the healer service
        healer = heal_fixture(self.bundle, self.cfg.scenario)
        heal_once(healer)  # warm-up
        ms = [heal_once(healer) for _ in range(self.cfg.heal_cycles)]
        self.results["heal_cycle_ms"] = round(statistics.median(ms), 1)
        self.results["heal_cycle_ms_max"] = round(max(ms), 1)
        self.results["heal_buffer_rows"] = healer.cfg.schedule.unlabelled_rows
