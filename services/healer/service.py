"""The healer: late labels joined to transactions, heal cycles in a child process, adapters
published to ``adapter-weights``, every snapshot on ``adapter-registry``, rollbacks.

Inputs (its own consumer group): ``transactions`` (into the label join), ``decisions``
(what each adapter decided, kept with the row to judge live quality), ``labels`` (late
truth, joined by id) and ``drift-alerts`` (an episode opens when a detector alarms and
closes once every detector has recovered). All of that is
:class:`~shared.healing.healer.Healer`'s policy, the one the offline runner runs; this
loop decodes, feeds it in a fixed order (transactions, decisions, alerts, labels), lets
its :class:`~shared.healing.worker.HealWorker` step between batches and publishes what
comes out. Heal cycles run in a child process (:mod:`shared.healing.process`): the loop
keeps consuming meanwhile without starving them, and no scorer ever waits for one.

With a ``state_dir`` the feature log (RocksDB) and a mirror of the registry live on disk
under ``state_dir/<bundle id>/``. On start the registry is rebuilt from
``adapter-registry`` (or, when that topic is empty, from the mirror, and written back),
the live adapter re-published (scorers ignore a version they already hold), the labelled
rows reloaded from the feature log, and an open drift episode picked up from
``drift-alerts``. A label that arrives after a restart still finds its transaction.
Event time is each record's ``ts``, else its record timestamp.
"""

from __future__ import annotations

import collections
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Message
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.bundle import Bundle
from shared.errors import WeightsError
from shared.feedback import metric_source
from shared.healing.before_labels import Diagnosed
from shared.healing.events import (
    Degraded,
    EpisodeClosed,
    EpisodeOpened,
    HealerEvent,
    HealOutcome,
    LabelsJudged,
    RolledBack,
)
from shared.healing.featurelog import FeatureLog
from shared.healing.healer import Healer, HealerConfig
from shared.healing.log_rate import LogRate
from shared.healing.process import HealProcess
from shared.healing.worker import HealWorker
from shared.kafka.clients import TrackedProducer, dead_letter, read_topic, record_ts
from shared.kafka.config import KafkaSettings, Topics, TopicSpec
from shared.kafka.registry_store import KafkaSnapshotStore, MirroredStore, publish_adapter
from shared.kafka.runtime import ConsumerService
from shared.log import get_logger
from shared.messages import (
    Alert,
    Reject,
    decode_alert,
    decode_decisions,
    decode_label,
    decode_transactions,
    encode_alert,
)
from shared.observability import lag_gauge
from shared.registry import DirectoryStore, Registry, Snapshot
from shared.signing import Signer


@dataclass(frozen=True)
class HealerServiceConfig:
    group: str = "selfheal-healer"
    batch_size: int = 1000
    poll_timeout: float = 0.1
    max_commit_wait: float = 1.0  # seconds of output left undelivered before the loop waits for it
    metrics_port: int | None = None
    healer: HealerConfig = field(default_factory=HealerConfig)  # the policy, shared with the offline runner
    state_dir: str | None = None  # the feature log and the registry's mirror (None: in memory, no mirror)


class HealerMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.lag = lag_gauge("healer", r)
        self.transactions = Counter("selfheal_healer_transactions", "Transactions buffered", registry=r)
        self.labels = Counter("selfheal_healer_labels", "Labels received, by source", ["source"], registry=r)
        self.fraud_labels = Counter(
            "selfheal_healer_fraud_labels",
            "Fraud labels received, by source (analyst: the precision of the alerts checked)",
            ["source"],
            registry=r,
        )
        self.foreign = Counter(
            "selfheal_healer_foreign_decisions", "Decisions from another bundle", registry=r
        )
        self.bad_labels = Counter(
            "selfheal_healer_bad_labels", "Unusable labels (sent to the DLQ)", registry=r
        )
        self.heals = Counter(
            "selfheal_healer_heals",
            "Heal cycles by result and the gate's verdict",
            ["result", "verdict"],
            registry=r,
        )
        self.rollbacks = Counter("selfheal_healer_rollbacks", "Rollbacks", registry=r)
        self.quarantined = Gauge(
            "selfheal_healer_labels_quarantined",
            "Labels quarantined as suspect so far (poisoned bursts)",
            registry=r,
        )
        self.bad_snapshots = Counter(
            "selfheal_healer_refused_snapshots", "Registry records refused (signature or payload)", registry=r
        )
        self.version = Gauge("selfheal_healer_adapter_version", "Live adapter version", registry=r)
        self.episode = Gauge("selfheal_healer_episode", "1 during a drift episode", registry=r)
        self.label_delay = Gauge(
            "selfheal_healer_label_delay_seconds", "Median label delay (event time)", registry=r
        )
        self.estimated_cost = Gauge(
            "selfheal_healer_estimated_cost",
            "Cost per transaction the label-free gate estimated (CBPE) for the adapter it made live",
            registry=r,
        )
        self.realised_cost = Gauge(
            "selfheal_healer_realised_cost",
            "Cost per transaction of the live healed adapter on its last chunk of arrived labels",
            registry=r,
        )
        self.log_sample = Gauge(
            "selfheal_healer_log_sample",
            "Share of unflagged transactions the feature log keeps (the budget's or the input rate's sample)",
            registry=r,
        )
        self.input_rate = Gauge(
            "selfheal_healer_input_rate",
            "Transactions a second arriving on the input topic (record time, last 10 s)",
            registry=r,
        )
        self.not_logged = Gauge(
            "selfheal_healer_rows_not_logged",
            "Unflagged transactions the feature log's sample left out (this process)",
            registry=r,
        )
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
        """``executor`` runs the heal cycles: a child process (:class:`HealProcess`) unless
        given (a test runs them inline, to replay a stream deterministically)."""
        self.bundle, self.settings, self.topics, self.config = bundle, settings, topics, config
        self.signer = signer
        self.metrics = HealerMetrics()
        self.log = get_logger("healer", bundle=bundle.id)
        self.producer = TrackedProducer(settings)
        self.store = store = KafkaSnapshotStore(
            settings, topics.registry, bundle.config, self.producer, signer
        )
        log, self.mirror = self._state(bundle, config)
        self.registry = Registry(self.mirror or store, bundle.id)
        self.metrics.bad_snapshots.inc(len(store.rejected))
        self.healer = Healer(bundle, self.registry, config.healer, log)
        if self.healer.before.unavailable is not None:
            self.log.warning("no healing before labels", reason=self.healer.before.unavailable)
        self.rebuilt = len(self.registry)
        self.worker = HealWorker(
            self.healer, executor or HealProcess(bundle, config.healer.heal, config.healer.before_labels)
        )
        self.rate = LogRate(config.healer.log_capacity)  # the feature log's sample, from the input rate
        self.foreign = 0  # decisions stamped with another bundle id
        self.published: list[int] = []

    def _state(
        self, bundle: Bundle, config: HealerServiceConfig
    ) -> tuple[FeatureLog | None, MirroredStore | None]:
        """On disk under ``state_dir/<bundle id>/``: the feature log and the registry's mirror."""
        if config.state_dir is None:
            return None, None
        home = Path(config.state_dir) / bundle.id
        h = config.healer
        log = FeatureLog(
            home / "features",
            len(bundle.features),
            h.label_horizon_ms,
            h.log_budget_bytes,
            by_time=h.imply_ms is not None,
        )
        return log, MirroredStore(self.store, DirectoryStore(home / "registry", bundle.config))

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
            "labels": self.healer.intake.hold or "trusted",
            "labels_join": self.healer.join.stats()
            | self.rate.stats()
            | {"labels_judging": len(self.healer.intake.guard.held)},  # found, their chunk not yet judged
            "before_labels": self.healer.before.unavailable or "on",  # or why this bundle cannot
            "diagnosis": self.healer.before.last,  # the newest label-free diagnosis of the episode
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
            restored_from_disk=self.mirror.restored if self.mirror else 0,
            refused=len(self.store.rejected),
            live_version=self.healer.version,
            labelled_rows=self.healer.join.stats()["labels_restored"],
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
        self.healer.join.flush()  # the rows still in memory: labels still to come will find them
        self.healer.join.log.close()

    def topic_specs(self) -> list[TopicSpec]:
        return self.settings.specs(self.topics)  # the adapter topics included

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
            decoded = decode_transactions([m.value() for m in tx], self.bundle.transaction_format)
            ts = [
                t if t is not None else record_ts(tx[i])
                for t, i in zip(decoded.ts, decoded.index, strict=True)
            ]
            self._sample_by_rate([record_ts(tx[0]), record_ts(tx[-1])], len(tx))
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

    def _sample_by_rate(self, stamps_ms: list[float], rows: int) -> None:
        """The input rate and what a logged row costs set the feature log's rate sample;
        a change is logged, the share kept and the rows left out are metrics."""
        log = self.healer.join.log
        self.rate.cost(log.write_seconds, log.written)
        ratio = self.rate.observe(stamps_ms, rows)
        if ratio != log.rate_sample:
            log.rate_sample = ratio
            level = self.log.warning if ratio < 1 else self.log.info
            level("feature log sample set by the input rate", ratio=ratio, **self.rate.stats())
        self.metrics.log_sample.set(log.kept_share)
        self.metrics.not_logged.set(log.not_kept)
        if (rate := self.rate.input_rate) is not None:
            self.metrics.input_rate.set(rate)

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
        for m, d in zip(msgs, decode_decisions([m.value() for m in msgs]), strict=True):
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
        ids, labels, stamps, sources = [], [], [], []
        for m in msgs:
            parsed = decode_label(m.value())
            if isinstance(parsed, Reject):
                self.metrics.bad_labels.inc()
                dead_letter(self.producer, self.topics.dlq, m, parsed.prefixed("label"), "healer")
                continue
            ids.append(parsed.id)
            labels.append(float(parsed.label))
            stamps.append(parsed.ts if parsed.ts is not None else record_ts(m))
            sources.append(parsed.source)
        self.healer.add_labels(ids, labels, stamps, sources)
        for src, n in collections.Counter(metric_source(s) for s in sources).items():
            self.metrics.labels.labels(source=src).inc(n)
        frauds = (metric_source(s) for s, y in zip(sources, labels, strict=True) if y >= 0.5)
        for src, n in collections.Counter(frauds).items():
            self.metrics.fraud_labels.labels(source=src).inc(n)
        delay = self.healer.join.stats().get("label_delay_ms_p50")
        if delay is not None:
            self.metrics.label_delay.set(delay / 1e3)

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
        if (cost := self.healer.check.quality.last_cost) is not None:
            self.metrics.realised_cost.set(cost)

    def act(self, events: list[HealerEvent | Diagnosed]) -> None:
        for e in events:
            if isinstance(e, HealOutcome):
                self._healed(e)
            elif isinstance(e, Diagnosed):
                self.alert(e.to_alert())
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
        found suspect or trusted again, a label-free diagnosis that changed."""
        self.producer.produce(self.topics.alerts, encode_alert(alert), key=alert.key)
        self.log.warning("alert", **alert.to_dict())

    def _healed(self, outcome: HealOutcome) -> None:
        result, job = outcome.result, outcome.job
        verdict = "unknown" if result.verdict is None else result.verdict.value
        self.metrics.heals.labels("accepted" if result.accepted else "refused", verdict).inc()
        self.metrics.heal_seconds.observe(result.duration_ms / 1e3)
        self.log.info(
            "heal",
            number=job.number,
            accepted=result.accepted,
            reason=result.reason,
            verdict=verdict,
            version=outcome.post.version,
            ms=round(result.duration_ms, 1),
        )
        if result.accepted:
            self.publish(outcome.post)
            if (estimated := result.metrics.get("estimated_cost_after")) is not None:
                self.metrics.estimated_cost.set(estimated)
