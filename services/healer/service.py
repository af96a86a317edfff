"""The healer: late labels joined to transactions, heal cycles on a worker thread, adapters
published to ``adapter-weights``, every snapshot on ``adapter-registry``, rollbacks.

Inputs (its own consumer group): ``transactions`` (the buffer), ``decisions`` (what each
adapter decided, to judge live quality), ``labels`` (late truth, joined by id) and
``drift-alerts`` (an episode opens when a detector alarms and closes once every detector
has recovered). All of that is :class:`~shared.healing.healer.Healer`'s policy, the one
the offline runner runs; this loop decodes, feeds it in a fixed order (transactions,
decisions, alerts, labels), lets its :class:`~shared.healing.worker.HealWorker` step
between batches and publishes what comes out. The heal cycle runs on a worker thread;
the loop keeps consuming meanwhile, and no scorer ever waits for it.
On start the registry is rebuilt from ``adapter-registry`` and the live adapter
re-published (scorers ignore a version they already hold); an open drift episode is
picked up from ``drift-alerts``. The transaction buffer and held labels are not rebuilt:
healing waits for ``min_labels`` new labels of the episode.
"""

from __future__ import annotations

from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Message
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.bundle import Bundle
from shared.errors import WeightsError
from shared.healing.events import (
    Degraded,
    EpisodeClosed,
    EpisodeOpened,
    HealerEvent,
    HealOutcome,
    LabelsJudged,
    RolledBack,
)
from shared.healing.healer import Healer, HealerConfig
from shared.healing.worker import HealWorker
from shared.kafka.clients import TrackedProducer, dead_letter, read_topic
from shared.kafka.config import KafkaSettings, Topics, TopicSpec
from shared.kafka.registry_store import KafkaSnapshotStore, publish_adapter
from shared.kafka.runtime import ConsumerService
from shared.log import get_logger
from shared.messages import (
    Alert,
    Reject,
    decode_alert,
    decode_decision,
    decode_label,
    decode_transactions,
    encode_alert,
)
from shared.observability import lag_gauge
from shared.registry import Registry, Snapshot
from shared.signing import Signer


@dataclass(frozen=True)
class HealerServiceConfig:
    group: str = "selfheal-healer"
    batch_size: int = 1000
    poll_timeout: float = 0.1
    max_commit_wait: float = 1.0  # seconds of output left undelivered before the loop waits for it
    metrics_port: int | None = None
    healer: HealerConfig = field(default_factory=HealerConfig)  # the policy, shared with the offline runner


class HealerMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.lag = lag_gauge("healer", r)
        self.transactions = Counter("selfheal_healer_transactions", "Transactions buffered", registry=r)
        self.labels = Counter("selfheal_healer_labels", "Labels received", registry=r)
        self.foreign = Counter(
            "selfheal_healer_foreign_decisions", "Decisions from another bundle", registry=r
        )
        self.bad_labels = Counter(
            "selfheal_healer_bad_labels", "Unusable labels (sent to the DLQ)", registry=r
        )
        self.heals = Counter("selfheal_healer_heals", "Heal cycles", ["result"], registry=r)
        self.rollbacks = Counter("selfheal_healer_rollbacks", "Rollbacks", registry=r)
        self.quarantined = Gauge(
            "selfheal_healer_labels_quarantined", "Labels held back as suspect (poisoned bursts)", registry=r
        )
        self.bad_snapshots = Counter(
            "selfheal_healer_refused_snapshots", "Registry records refused (signature or payload)", registry=r
        )
        self.version = Gauge("selfheal_healer_adapter_version", "Live adapter version", registry=r)
        self.episode = Gauge("selfheal_healer_episode", "1 during a drift episode", registry=r)
        self.label_delay = Gauge("selfheal_healer_label_delay_transactions", "Median label delay", registry=r)
        self.heal_seconds = Histogram(
            "selfheal_healer_heal_seconds",
            "Heal cycle duration",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )


class HealerService(ConsumerService):
    def __init__(
        self,
        bundle: Bundle,
        settings: KafkaSettings,
        topics: Topics,
        config: HealerServiceConfig,
        signer: Signer,
        executor: Executor | None = None,
    ) -> None:
        """``executor`` runs the heal cycles: a worker thread unless given (a test runs them
        inline, to replay a stream deterministically)."""
        self.bundle, self.settings, self.topics, self.config = bundle, settings, topics, config
        self.signer = signer
        self.metrics = HealerMetrics()
        self.log = get_logger("healer", bundle=bundle.id)
        self.producer = TrackedProducer(settings)
        self.store = store = KafkaSnapshotStore(
            settings, topics.registry, bundle.config, self.producer, signer
        )
        self.registry = Registry(store, bundle.id)
        self.metrics.bad_snapshots.inc(len(store.rejected))
        self.healer = Healer(bundle, self.registry, config.healer)
        self.rebuilt = len(self.registry)
        self.worker = HealWorker(self.healer, executor or ThreadPoolExecutor(1, thread_name_prefix="heal"))
        self.foreign = 0  # decisions stamped with another bundle id
        self.published: list[int] = []

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "service": "healer",
            "partitions": self.assigned,
            "bundle": self.bundle.id,
            "adapter_version": self.healer.version,
            "episode": self.healer.episode is not None,
            "snapshots": len(self.registry),
            "healing": self.worker.running is not None,
            "labels": self.healer.guard.hold or "trusted",
            "buffer": self.healer.buffer.stats(),
        }

    def publish(self, snap: Snapshot) -> None:
        publish_adapter(self.producer, self.topics.weights, snap, self.signer)
        self.published.append(snap.version)
        self.metrics.version.set(snap.version)
        self.log.info("adapter published", version=snap.version, kind=snap.kind, snapshot=snap.id)

    def inputs(self) -> list[str]:
        t = self.topics
        return [t.transactions, t.decisions, t.labels, t.alerts, t.registry]

    def on_start(self) -> None:
        self.log.info(
            "registry rebuilt",
            snapshots=self.rebuilt,
            refused=len(self.store.rejected),
            live_version=self.healer.version,
        )
        if self.healer.version > 0:
            self.publish(self.healer.live)
        # the episode lives in memory: after a restart, the alerts say whether one is open
        # (the monitor publishes state changes only, so the last summary alert is the state)
        self._alerts(list(read_topic(self.settings, self.topics.alerts, timeout=10.0)))
        if self.healer.episode is not None:
            self.log.info("drift episode resumed from drift-alerts", onset_row=self.healer.episode.start)

    def on_stop(self) -> None:
        self.act(self.worker.close())
        self.producer.flush()

    def topic_specs(self) -> list[TopicSpec]:
        return self.topics.specs(self.settings.replication)  # the adapter topics included

    def on_topics_recreated(self, names: list[str]) -> None:
        """The broker lost its topics (the memory-only embedded broker restarted): write the
        registry and the live adapter again, so scorers and a restarted healer find them."""
        super().on_topics_recreated(names)
        if self.topics.registry in names:
            self.store.put_many(self.registry.snapshots())
            self.log.warning("registry written again", snapshots=len(self.registry))
        if self.topics.weights in names:
            self.publish(self.healer.live)

    # -- the loop
    def handle(self, data: list[Message]) -> None:
        t = self.topics
        by_topic: dict[str, list[Message]] = {}
        for m in data:
            by_topic.setdefault(m.topic() or "", []).append(m)
        if tx := by_topic.get(t.transactions):
            decoded = decode_transactions([m.value() for m in tx], self.bundle.features)
            ts = [t if t is not None else 0.0 for t in decoded.ts]
            self.healer.add_transactions(decoded.ids, decoded.X, ts)
            self.metrics.transactions.inc(len(decoded.ids))
        if dec := by_topic.get(t.decisions):
            self._decisions(dec)
        if alerts := by_topic.get(t.alerts):
            self._alerts(alerts)
        if labels := by_topic.get(t.labels):
            self._labels(labels)
        if snaps := by_topic.get(t.registry):
            self._registry(snaps)

    def _registry(self, msgs: list[Message]) -> None:
        """Snapshots others wrote: an operator's rollback (``selfheal registry rollback``)."""
        for m in msgs:
            try:
                snap = self.store.parse(m)
            except WeightsError as exc:
                self.metrics.bad_snapshots.inc()
                self.log.error("snapshot refused", reason=str(exc), topic=m.topic(), offset=m.offset())
                continue
            if self.healer.adopt(snap):
                self.metrics.version.set(snap.version)
                self.log.warning("operator rollback adopted", version=snap.version, snapshot=snap.id)

    def _decisions(self, msgs: list[Message]) -> None:
        ids: list[str] = []
        fraud: list[bool] = []
        versions: list[int] = []
        shadow: list[bool] = []
        for m in msgs:
            d = decode_decision(m.value())
            if isinstance(d, Reject):
                continue
            if d.bundle != self.bundle.id:
                self.metrics.foreign.inc()
                self.foreign += 1
                if self.foreign == 1:
                    self.log.error(
                        "decisions from another bundle: scorers and healer disagree",
                        theirs=d.bundle,
                        topic=m.topic(),
                        partition=m.partition(),
                        offset=m.offset(),
                    )
                continue
            ids.append(d.id)
            fraud.append(d.fraud)
            versions.append(d.adapter_version)
            shadow.append(d.shadow_fraud)
        self.healer.add_decisions(ids, fraud, versions, shadow)

    def _labels(self, msgs: list[Message]) -> None:
        ids, labels = [], []
        for m in msgs:
            parsed = decode_label(m.value())
            if isinstance(parsed, Reject):
                self.metrics.bad_labels.inc()
                dead_letter(self.producer, self.topics.dlq, m, parsed.prefixed("label"), "healer")
                continue
            ids.append(parsed.id)
            labels.append(float(parsed.label))
        self.healer.add_labels(ids, labels)
        self.metrics.labels.inc(len(ids))
        delay = self.healer.buffer.stats().get("label_delay_tx_p50")
        if delay is not None:
            self.metrics.label_delay.set(delay)

    def _alerts(self, msgs: list[Message]) -> None:
        for m in msgs:
            alert = decode_alert(m.value())
            if not isinstance(alert, Reject):
                self.healer.on_alert(alert)

    def tick(self) -> None:
        """Between batches: the worker collects a finished heal, starts the next, checks live
        quality; what happened is published, counted and logged."""
        self.act(self.worker.step())
        self.metrics.quarantined.set(self.healer.labels_quarantined)

    def act(self, events: list[HealerEvent]) -> None:
        for e in events:
            if isinstance(e, HealOutcome):
                self._healed(e)
            elif isinstance(e, RolledBack):
                self.metrics.rollbacks.inc()
                self.log.warning(
                    "rollback", reason=e.reason, to_version=e.snapshot.version, snapshot=e.snapshot.id
                )
                self.publish(e.snapshot)
                self.alert(e.to_alert())
            elif isinstance(e, LabelsJudged):
                self.alert(e.to_alert())
            elif isinstance(e, Degraded):
                self.log.warning(
                    "live quality degraded; already on the adapter a rollback would restore", reason=e.reason
                )
            elif isinstance(e, EpisodeOpened):
                self.metrics.episode.set(1)
                self.log.info("drift episode", trigger=e.trigger, onset_row=e.start)
            elif isinstance(e, EpisodeClosed):
                self.metrics.episode.set(0)
                self.log.info("episode closed", trigger=e.trigger)

    def alert(self, alert: Alert) -> None:
        """A record on drift-alerts from the healer (``detector: healer``): rollbacks, labels
        found suspect or trusted again."""
        self.producer.produce(self.topics.alerts, encode_alert(alert), key=alert.key)
        self.log.warning("alert", **alert.to_dict())

    def _healed(self, outcome: HealOutcome) -> None:
        result, job = outcome.result, outcome.job
        self.metrics.heals.labels("accepted" if result.accepted else "refused").inc()
        self.metrics.heal_seconds.observe(result.duration_ms / 1e3)
        self.log.info(
            "heal",
            number=job.number,
            accepted=result.accepted,
            reason=result.reason,
            version=outcome.post.version,
            ms=round(result.duration_ms, 1),
        )
        if result.accepted:
            self.publish(outcome.post)
