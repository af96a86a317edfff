"""The scorer: transactions in, decisions out, adapters hot-swapped between batches.

    take a batch (the first message, then whatever else is fetched, up to batch_size)
    -> swap adapter if a new one is pending -> decode (bad -> DLQ) -> score live + shadow
    -> produce decisions -> store offsets once the producer has delivered everything

At-least-once: an input offset is stored only after every decision (or DLQ record)
queued before it is delivered (see shared.kafka.runtime.OffsetCommitter), so a crash
re-scores at most the input of the last ``max_commit_wait`` seconds; a duplicate decision
carries the same id. SIGTERM finishes the batch, delivers, commits, exits 0.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Message
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.bundle import Bundle
from shared.kafka.clients import TrackedProducer, dead_letter
from shared.kafka.config import KafkaSettings, Topics
from shared.kafka.follow import AdapterFollower
from shared.kafka.runtime import ConsumerService
from shared.log import get_logger
from shared.messages import Alert, Checks, RecentIds, decode_transactions, encode_alert
from shared.messages.adapters import AdapterMessage
from shared.observability import lag_gauge
from shared.scoring import ScoringCore
from shared.signing import Signer


@dataclass(frozen=True)
class ScorerConfig:
    group: str = "selfheal-scorer"  # consumer group shared by every scorer
    batch_size: int = 500  # max messages per batch
    poll_timeout: float = 0.1  # seconds to wait for a first message (a batch never waits to fill)
    fetch_wait_ms: int = 5  # fetch.wait.max.ms: the embedded broker holds every fetch this long
    linger_ms: float = 2  # linger.ms for decisions: a batch's decisions are produced at once
    max_commit_wait: float = 1.0  # seconds of output left undelivered before the loop waits for it
    recent_ids: int = 100_000  # ids remembered: a transaction sent again is dead-lettered (0: off)
    metrics_port: int | None = None  # /metrics and /health; None: not served


class ScorerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.lag = lag_gauge("scorer", r)
        self.transactions = Counter("selfheal_scorer_transactions", "Transactions consumed", registry=r)
        self.decisions = Counter("selfheal_scorer_decisions", "Decisions produced", registry=r)
        self.alerts = Counter(
            "selfheal_scorer_alerts", "Decisions that raised an alert (score >= threshold)", registry=r
        )
        self.dlq = Counter("selfheal_scorer_dlq", "Records sent to the DLQ", ["reason"], registry=r)
        self.swaps = Counter("selfheal_scorer_adapter_swaps", "Adapters swapped in", registry=r)
        self.rejected = Counter("selfheal_scorer_adapter_rejected", "Adapter payloads refused", registry=r)
        self.version = Gauge("selfheal_scorer_adapter_version", "Adapter version scoring now", registry=r)
        self.decision_latency = Histogram(
            "selfheal_scorer_decision_latency_seconds",
            "Per batch, its slowest decision: transaction ts (or receipt) to decision queued",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=r,
        )
        self.latency = Histogram(
            "selfheal_scorer_batch_seconds",
            "Time to decode, score and queue one batch",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )


class ScorerService(ConsumerService):
    fill_batches = False  # a batch is what has arrived: never wait for more

    def __init__(
        self, bundle: Bundle, settings: KafkaSettings, topics: Topics, config: ScorerConfig, signer: Signer
    ) -> None:
        self.bundle, self.settings, self.topics, self.config = bundle, settings, topics, config
        self.core = ScoringCore(bundle)
        self.metrics = ScorerMetrics()
        self.producer = TrackedProducer(settings, **{"linger.ms": config.linger_ms})
        self.log = get_logger("scorer", bundle=bundle.id)
        self.batches = 0
        self.recent = RecentIds(config.recent_ids)
        self.follower = AdapterFollower(
            settings, topics.weights, bundle.config, bundle.id, signer, self._on_adapter, self._on_reject
        )

    def _on_adapter(self, message: AdapterMessage) -> None:
        self.core.offer(message.state, message.version)
        self.log.info("adapter received", version=message.version, parent=message.parent)

    def _on_reject(self, reason: str, offset: int) -> None:
        """A payload on adapter-weights was refused (on the follower's thread): keep the live
        adapter, count it, log it, and raise an alert on drift-alerts."""
        self.metrics.rejected.inc()
        self.log.error(
            "adapter refused; keeping the live one",
            reason=reason,
            topic=self.topics.weights,
            offset=offset,
            live_version=self.core.live.version,
        )
        alert = Alert(
            "scorer",
            "adapter-weights",
            self.follower.rejected,
            0,
            "rejected",
            details={"reason": reason, "offset": offset, "live_version": self.core.live.version},
        )
        self.producer.produce(self.topics.alerts, encode_alert(alert), key=alert.key)

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "service": "scorer",
            "partitions": self.assigned,
            "bundle": self.bundle.id,
            "adapter_version": self.core.live.version,
            "batches": self.batches,
            "adapters_caught_up": self.follower.caught_up.is_set(),
        }

    def inputs(self) -> list[str]:
        return [self.topics.transactions]

    def consumer_overrides(self) -> dict[str, Any]:
        return {"fetch.wait.max.ms": self.config.fetch_wait_ms}

    def on_start(self) -> None:
        self.follower.start()

    def on_stop(self) -> None:
        self.follower.stop()

    def tick(self) -> None:
        """Between batches: take the newest adapter the follower thread has built."""
        swapped = self.core.swap_if_pending()
        if swapped is not None:
            self.metrics.swaps.inc()
            self.metrics.version.set(swapped.version)
            lag_ms = (time.monotonic() - swapped.received) * 1e3
            self.log.info("adapter swapped in", version=swapped.version, waited_ms=round(lag_ms, 2))

    def handle(self, data: list[Message]) -> None:
        producer = self.producer
        t0 = time.perf_counter()
        received_ms = time.time() * 1e3
        checks = Checks([m.key() for m in data], self.bundle.id, self.recent)
        decoded = decode_transactions([m.value() for m in data], self.bundle.transaction_format, checks)
        self.metrics.transactions.inc(len(data))
        if decoded.ids:
            out = self.core.decisions(decoded.ids, decoded.X, decoded.ts, received_ms)
            producer.produce_many(self.topics.decisions, out, decoded.ids)
            self.recent.add(decoded.ids)
            self.metrics.decisions.inc(len(out))
            self.metrics.alerts.inc(self.core.alerts)
            self.metrics.decision_latency.observe(self.core.worst_latency_ms / 1e3)
        for i, reason in decoded.rejected:
            m = data[i]
            dead_letter(producer, self.topics.dlq, m, reason, "scorer")
            self.metrics.dlq.labels(reason.code.value).inc()
            self.log.warning(
                "dead-lettered",
                reason=reason.text,
                code=reason.code.value,
                topic=m.topic(),
                partition=m.partition(),
                offset=m.offset(),
            )
        self.batches += 1
        self.metrics.latency.observe(time.perf_counter() - t0)
