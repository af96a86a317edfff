"""The monitor: FIDI over ``transactions`` and the conflict rate over ``decisions``; it
publishes ``drift-alerts`` when a state changes, never on every batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka import Message
from prometheus_client import CollectorRegistry, Counter, Gauge

from shared.bundle import Bundle
from shared.kafka.clients import TrackedProducer
from shared.kafka.config import KafkaSettings, Topics
from shared.kafka.runtime import ConsumerService
from shared.log import get_logger
from shared.messages import Alert, Reject, decode_decisions, decode_transactions, encode_alert
from shared.monitoring import DriftMonitor
from shared.observability import lag_gauge


@dataclass(frozen=True)
class MonitorConfig:
    group: str = "selfheal-monitor"  # its own group: it sees every transaction
    batch_rows: int = 100  # decisions per conflict-rate update (FIDI judges every row)
    batch_size: int = 1000  # max messages per consume()
    poll_timeout: float = 0.1
    max_commit_wait: float = 1.0  # seconds of output left undelivered before the loop waits for it
    metrics_port: int | None = None


class MonitorMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.lag = lag_gauge("monitor", r)
        self.transactions = Counter("selfheal_monitor_transactions", "Transactions seen", registry=r)
        self.skipped = Counter(
            "selfheal_monitor_skipped", "Unusable transactions (the scorer DLQs them)", registry=r
        )
        self.decisions = Counter("selfheal_monitor_decisions", "Decisions seen", registry=r)
        self.foreign = Counter(
            "selfheal_monitor_foreign_decisions", "Decisions from another bundle", registry=r
        )
        self.alerts = Counter(
            "selfheal_monitor_alerts", "Alerts published", ["detector", "state"], registry=r
        )
        self.index = Gauge("selfheal_monitor_fidi_index", "FIDI index (>= 1: drift)", registry=r)
        self.drift = Gauge("selfheal_monitor_drift_state", "1 while FIDI is in drift", registry=r)
        self.category_index = Gauge(
            "selfheal_monitor_category_index",
            "Chi-square index of the category fields' frequencies (>= 1: drift; 0 without categories)",
            registry=r,
        )
        self.conflict_rate = Gauge(
            "selfheal_monitor_conflict_rate", "Rule/model conflict rate (window)", registry=r
        )
        per_feature = ["feature"]
        self.feature_index = Gauge(
            "selfheal_monitor_feature_index",
            "FIDI index of one feature (>= 1: it drifts)",
            per_feature,
            registry=r,
        )
        self.feature_effect = Gauge(
            "selfheal_monitor_feature_effect",
            "Shift of a feature's mean, in reference standard deviations",
            per_feature,
            registry=r,
        )
        self.feature_drift = Gauge(
            "selfheal_monitor_feature_drift",
            "1 while the current drift names this feature",
            per_feature,
            registry=r,
        )

    def set_features(self, core: DriftMonitor) -> None:
        fidi, alarmed = core.fidi, set(core.alarmed)
        for f, index, effect in zip(fidi.features, fidi.feature_index, fidi.effect, strict=True):
            self.feature_index.labels(f).set(float(index))
            self.feature_effect.labels(f).set(float(effect))
            self.feature_drift.labels(f).set(1 if f in alarmed else 0)


class MonitorService(ConsumerService):
    def __init__(
        self, bundle: Bundle, settings: KafkaSettings, topics: Topics, config: MonitorConfig
    ) -> None:
        self.bundle, self.settings, self.topics, self.config = bundle, settings, topics, config
        self.core = DriftMonitor(bundle, batch_rows=config.batch_rows)
        self.metrics = MonitorMetrics()
        self.producer = TrackedProducer(settings)
        self.log = get_logger("monitor", bundle=bundle.id)
        self.published: list[Alert] = []

    def health(self) -> dict[str, Any]:
        fidi = self.core.fidi
        return {
            "status": "ok",
            "service": "monitor",
            "partitions": self.assigned,
            "bundle": self.bundle.id,
            "rows": self.core.rows,
            "in_drift": fidi.in_drift,
            "fidi_index": fidi.index,
            "category_index": None if self.core.categories is None else self.core.categories.index,
        }

    def inputs(self) -> list[str]:
        return [self.topics.transactions, self.topics.decisions]

    def handle(self, data: list[Message]) -> None:
        tx = [m.value() for m in data if m.topic() == self.topics.transactions]
        dec = [m.value() for m in data if m.topic() == self.topics.decisions]
        alerts: list[Alert] = []
        if tx:
            decoded = decode_transactions(tx, self.bundle.transaction_format)
            self.metrics.transactions.inc(len(decoded.ids))
            self.metrics.skipped.inc(len(decoded.rejected))
            alerts += self.core.add_transactions(decoded.X, decoded.ts)
        if dec:
            flags = []
            for d in decode_decisions(dec):
                if isinstance(d, Reject):
                    continue
                if d.bundle != self.bundle.id:
                    self.metrics.foreign.inc()  # a scorer on another bundle: its conflicts are not ours
                    continue
                flags.append(d.conflict)
            self.metrics.decisions.inc(len(flags))
            alerts += self.core.add_conflicts(flags)
        for alert in alerts:
            self.producer.produce(self.topics.alerts, encode_alert(alert), key=alert.key)
            self.metrics.alerts.labels(alert.detector, alert.state).inc()
            self.log.info("alert", **alert.to_dict())
        self.published += alerts
        self.metrics.index.set(self.core.fidi.index)
        self.metrics.drift.set(1 if self.core.fidi.in_drift else 0)
        if self.core.categories is not None:
            self.metrics.category_index.set(self.core.categories.index)
        self.metrics.conflict_rate.set(self.core.conflicts.rate)
        if tx:
            self.metrics.set_features(self.core)
