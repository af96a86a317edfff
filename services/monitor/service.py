"""The monitor: FIDI over ``transactions`` and the conflict rate over ``decisions``; it
publishes ``drift-alerts`` when a state changes, never on every batch.

One monitor (the default) reads every partition and judges what it reads. Monitors scale
out with ``scale_out`` (``selfheal monitor --scale-out``), every instance of the group
started with it: each reads the partitions the group gives it and publishes their
sufficient statistics to ``monitor-stats`` (:mod:`shared.messages.monitor_stats`); that
topic has one partition, so the group gives it to exactly one instance, which judges the
statistics of all of them, in the order they arrive, and raises the alerts. The sums add
up exactly: the judge sees the windows of the combined stream. If the judging instance
goes, the group hands the partition to another, which goes on from the last committed
statistics with empty windows (they fill within 2,048 rows).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

import numpy as np
from confluent_kafka import Consumer, Message, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge

from shared.bundle import Bundle
from shared.kafka.clients import TrackedProducer
from shared.kafka.config import KafkaSettings, Topics
from shared.kafka.runtime import ConsumerService
from shared.log import get_logger
from shared.messages import Alert, Reject, decode_decisions, decode_transactions, encode_alert
from shared.messages.monitor_stats import MonitorStats, decode_stats, encode_stats
from shared.monitoring import BLOCK_ROWS, DriftMonitor
from shared.observability import lag_gauge


@dataclass(frozen=True)
class MonitorConfig:
    group: str = "selfheal-monitor"  # its own group: it sees every transaction
    batch_rows: int = 100  # decisions per conflict-rate update (FIDI judges every row)
    batch_size: int = 1000  # max messages per consume()
    poll_timeout: float = 0.1
    max_commit_wait: float = 1.0  # seconds of output left undelivered before the loop waits for it
    metrics_port: int | None = None
    scale_out: bool = False  # one of several monitors in the group: statistics via monitor-stats
    block_rows: int = BLOCK_ROWS  # with scale_out: rows per block it publishes (the judge's step)


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
        self.judging = Gauge(
            "selfheal_monitor_judging",
            "1 while this instance judges for its group (always, without --scale-out)",
            registry=r,
        )
        self.judged = Counter("selfheal_monitor_judged_rows", "Transactions judged by FIDI", registry=r)
        self.stats_published = Counter(
            "selfheal_monitor_stats_published", "Statistics records published to monitor-stats", registry=r
        )
        self.stats_refused = Counter(
            "selfheal_monitor_stats_refused",
            "monitor-stats records not judged",
            ["reason"],  # unreadable | foreign (another bundle)
            registry=r,
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
        self.source = f"{socket.gethostname()}-{os.getpid()}"  # this instance, on monitor-stats
        self.judging = not config.scale_out  # alone, it judges; in a group, while it holds monitor-stats
        self._fresh = False  # blocks judged since the per-feature gauges were last set
        self.metrics.judging.set(1 if self.judging else 0)

    def health(self) -> dict[str, Any]:
        fidi = self.core.fidi
        return {
            "status": "ok",
            "service": "monitor",
            "partitions": self.assigned,
            "bundle": self.bundle.id,
            "rows": self.core.rows,
            "scale_out": self.config.scale_out,
            "judging": self.judging,
            "in_drift": fidi.in_drift,
            "fidi_index": fidi.index,
            "category_index": None if self.core.categories is None else self.core.categories.index,
        }

    def inputs(self) -> list[str]:
        t = self.topics
        return [t.transactions, t.decisions] + ([t.monitor_stats] if self.config.scale_out else [])

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        super()._on_assign(consumer, partitions)
        if self.config.scale_out:
            judging = any(p.topic == self.topics.monitor_stats for p in partitions)
            if judging and not self.judging:  # windows of an earlier turn as judge would be stale
                self.core.forget_judged()
            self.judging = judging
            self.metrics.judging.set(1 if judging else 0)
            self.log.info("monitor group: judging" if judging else "monitor group: reading only")

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        super()._on_revoke(consumer, partitions)
        if self.config.scale_out:
            self.judging = False
            self.metrics.judging.set(0)

    def handle(self, data: list[Message]) -> None:
        t = self.topics
        tx = [m.value() for m in data if m.topic() == t.transactions]
        dec = [m.value() for m in data if m.topic() == t.decisions]
        counts = self.core.conflict_counts(self._flags(dec)) if dec else []
        alerts: list[Alert] = []
        blocks = None
        if tx:
            decoded = decode_transactions(tx, self.bundle.transaction_format)
            self.metrics.transactions.inc(len(decoded.ids))
            self.metrics.skipped.inc(len(decoded.rejected))
            if self.config.scale_out:
                blocks = self.core.summarise(decoded.X, decoded.ts, self.config.block_rows)
            else:  # alone: every row judged
                alerts += self.core.add_transactions(decoded.X, decoded.ts)
                self.metrics.judged.inc(len(decoded.ids))
                self._fresh = True
        if not self.config.scale_out:
            alerts += self.core.add_conflict_counts(counts)
        else:
            if blocks is not None or counts:
                if blocks is None:  # decisions alone: no rows to summarise
                    blocks = self.core.summarise(np.zeros((0, len(self.bundle.features))))
                stats = MonitorStats(self.bundle.id, self.source, blocks, counts)
                self.producer.produce(t.monitor_stats, encode_stats(stats), key=self.source)
                self.metrics.stats_published.inc()
            for m in data:
                if m.topic() == t.monitor_stats:
                    alerts += self._judge_record(m.value())
        self._publish(alerts)

    def _flags(self, values: list[bytes | None]) -> list[bool]:
        """The conflict flags of this bundle's decisions."""
        flags = []
        for d in decode_decisions(values):
            if isinstance(d, Reject):
                continue
            if d.bundle != self.bundle.id:
                self.metrics.foreign.inc()  # a scorer on another bundle: its conflicts are not ours
                continue
            flags.append(d.conflict)
        self.metrics.decisions.inc(len(flags))
        return flags

    def _judge_record(self, raw: bytes | None) -> list[Alert]:
        """A record of monitor-stats (this instance's or another's), judged."""
        stats = decode_stats(raw)
        if isinstance(stats, Reject):
            self.metrics.stats_refused.labels("unreadable").inc()
            self.log.warning("monitor-stats record refused", reason=str(stats))
            return []
        if stats.bundle != self.bundle.id or stats.blocks.fidi.shape[1] != len(self.bundle.features):
            self.metrics.stats_refused.labels("foreign").inc()  # a monitor group on another bundle
            return []
        alerts = []
        if len(stats.blocks):
            alerts = self.core.add_blocks(stats.blocks)
            self.metrics.judged.inc(int(stats.blocks.rows.sum()))
            self._fresh = True  # the per-feature gauges change
        return alerts + self.core.add_conflict_counts(stats.conflicts)

    def _publish(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            self.producer.produce(self.topics.alerts, encode_alert(alert), key=alert.key)
            self.metrics.alerts.labels(alert.detector, alert.state).inc()
            self.log.info("alert", **alert.to_dict())
        self.published += alerts
        if not self.judging:
            return
        self.metrics.index.set(self.core.fidi.index)
        self.metrics.drift.set(1 if self.core.fidi.in_drift else 0)
        if self.core.categories is not None:
            self.metrics.category_index.set(self.core.categories.index)
        self.metrics.conflict_rate.set(self.core.conflicts.rate)
        if self._fresh:
            self.metrics.set_features(self.core)
            self._fresh = False
