"""The benchmark's children that are not services: the passthrough (the scorer's loop with
no work), the heal load (a healer healing back to back) and the offered load (transactions
at a fixed rate). ``python -m services.bench passthrough|heal-load|offer ...`` runs one."""

from __future__ import annotations

import argparse
import gc
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import torch
from confluent_kafka import Message, Producer
from prometheus_client import CollectorRegistry, Counter

from services.scorer.service import ScorerConfig
from shared.bundle import Bundle
from shared.data import build
from shared.healing.healer import Healer, HealerConfig
from shared.healing.process import heal_priority
from shared.kafka import KafkaSettings, TrackedProducer
from shared.kafka.config import TopicSpec, producer_config
from shared.kafka.runtime import ConsumerService, StopFlag
from shared.log import get_logger
from shared.messages import Transaction, encode_transaction
from shared.observability import MetricsServer, lag_gauge
from shared.registry import MemoryStore, Registry

PASSED = "selfheal_passthrough_messages_total"  # the counter that says the passthrough did its backlog


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
    """A healer in a drift episode with as many drifted rows as a labelled heal trains on
    beside its labels, labels arrived for all but the newest 500 (what it holds when it
    heals in the stack)."""
    healer = Healer(bundle, Registry(MemoryStore(), bundle.id), config or HealerConfig())
    s = build(scenario).stream
    n = healer.cfg.schedule.unlabelled_rows
    lo = len(s) - n
    ids = [str(i) for i in s.ids[lo:]]
    healer.add_transactions(ids, s.X[lo:], [float(i) for i in range(n)])
    healer.open_episode(onset_rows=n)
    healer.add_labels(ids[: n - 500], [float(v) for v in s.y[lo : len(s) - 500]])
    return healer


def heal_once(healer: Healer) -> float:
    """One heal cycle (prepare, run, finish) on the episode's rows; its wall time in ms."""
    t = time.perf_counter()
    job = healer.prepare()
    assert job is not None, healer.ready()
    healer.finish(job, healer.run(job))
    return (time.perf_counter() - t) * 1e3


def heal_load(bundle_path: str, scenario: str, port: int) -> None:
    """Heal back to back until SIGTERM, at the priority of the healer service's heal
    process; /health on ``port`` says how many cycles ran."""
    heal_priority()
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


def offer(
    bundle_path: str, scenario: str, topic: str, prefix: str, rate: int, seconds: float, out: str
) -> None:
    """Send ``rate`` transactions a second to ``topic`` for ``seconds``, each stamped (``ts``)
    as it is sent, by a producer configured like librdkafka's defaults (linger 5 ms); then
    write ``{"sent": {id: sent epoch ms}, "acked_ms": [produce -> broker ack, per message],
    "cpu_s": CPU seconds while sending, "seconds": ...}`` to ``out``. A process of its own,
    so the load costs the benchmark's instruments (the readers of the outputs) no GIL;
    ``out + ".started"`` appears when the first transaction goes."""
    sent: dict[str, float] = {}
    acked: list[float] = []

    def on_delivery(err: object, msg: Message) -> None:  # the broker acknowledged (or refused) it
        if err is None:
            acked.append(time.time() * 1e3 - sent[msg.key().decode()])  # type: ignore[union-attr]

    producer = Producer(producer_config(KafkaSettings.from_env(), on_delivery=on_delivery))
    features = list(Bundle.load(bundle_path).features)
    rows = [row.tolist() for row in build(scenario).stream.X]
    gc.freeze()  # start-up's objects (torch's among them): no full collection pauses the sender
    Path(out + ".started").touch()
    cpu0, start, i, tick = time.process_time(), time.monotonic(), 0, 0.002
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed * rate)
        while i < due:
            tx_id = f"{prefix}-{i}"
            now = time.time() * 1e3
            sent[tx_id] = now
            tx = Transaction.from_row(tx_id, features, rows[i % len(rows)], now)
            producer.produce(topic, encode_transaction(tx), key=tx_id)
            i += 1
        producer.poll(0)
        time.sleep(tick)
    producer.flush(30)
    cpu = time.process_time() - cpu0
    Path(out).write_bytes(orjson.dumps({"sent": sent, "acked_ms": acked, "cpu_s": cpu, "seconds": seconds}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m services.bench", description=__doc__)
    sub = p.add_subparsers(dest="child", required=True)
    pt = sub.add_parser("passthrough", help="copy SOURCE onto SINK, as the scorer's loop would")
    for name in ("source", "sink", "group"):
        pt.add_argument(name)
    hl = sub.add_parser("heal-load", help="heal back to back until SIGTERM")
    hl.add_argument("bundle")
    hl.add_argument("scenario")
    of = sub.add_parser("offer", help="send RATE transactions/s to TOPIC for SECONDS; sent times to OUT")
    for name in ("bundle", "scenario", "topic", "prefix"):
        of.add_argument(name)
    of.add_argument("rate", type=int)
    of.add_argument("seconds", type=float)
    of.add_argument("out")
    for child in (pt, hl, of):
        child.add_argument("--metrics-port", type=int, required=True)
    args = p.parse_args(argv)
    if args.child == "offer":
        offer(args.bundle, args.scenario, args.topic, args.prefix, args.rate, args.seconds, args.out)
    elif args.child == "passthrough":
        service = PassthroughService(
            KafkaSettings.from_env(), args.source, args.sink, args.group, args.metrics_port
        )
        service.run(StopFlag())
    else:
        heal_load(args.bundle, args.scenario, args.metrics_port)
    return 0
