"""Kafka settings from the environment, topic names, and the layered client configuration.

Environment (all optional):

=================================  =======================================
``KAFKA_BOOTSTRAP_SERVERS``        a real cluster; unset: the embedded broker
``KAFKA_SECURITY_PROTOCOL``        ``security.protocol`` (e.g. ``SASL_SSL``)
``KAFKA_SASL_MECHANISM``           ``sasl.mechanism`` (e.g. ``SCRAM-SHA-512``)
``KAFKA_SASL_USERNAME``            ``sasl.username``
``KAFKA_SASL_PASSWORD``            ``sasl.password`` (never logged)
``KAFKA_SSL_CA_LOCATION``          ``ssl.ca.location``
``KAFKA_CONFIG_<NAME>``            any librdkafka setting: ``KAFKA_CONFIG_SSL_KEY_PASSWORD``
                                   sets ``ssl.key.password``
``SELFHEAL_TOPIC_<NAME>``          topic names: ``SELFHEAL_TOPIC_DECISIONS=fraud.decisions``
``SELFHEAL_TOPIC_REPLICATION``     replication factor for created topics (default 1)
``SELFHEAL_TOPIC_PARTITIONS``      partitions of created transactions, decisions and labels
                                   topics (default 4): the most scorers that share the work
=================================  =======================================

Client configuration is merged in layers: selfheal's defaults, then the role's
settings, then the connection settings from the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

_NAMED = {
    "KAFKA_SECURITY_PROTOCOL": "security.protocol",
    "KAFKA_SASL_MECHANISM": "sasl.mechanism",
    "KAFKA_SASL_MECHANISMS": "sasl.mechanism",
    "KAFKA_SASL_USERNAME": "sasl.username",
    "KAFKA_SASL_PASSWORD": "sasl.password",
    "KAFKA_SSL_CA_LOCATION": "ssl.ca.location",
    "KAFKA_SSL_CERTIFICATE_LOCATION": "ssl.certificate.location",
    "KAFKA_SSL_KEY_LOCATION": "ssl.key.location",
}
_SECRET_WORDS = ("password", "secret", "token", "key")
MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # adapters are ~33 kB; transactions far smaller
STATS_RETENTION_MS = 24 * 3600 * 1000  # monitor-stats is read within seconds; a day covers any restart


@dataclass(frozen=True)
class Topics:
    transactions: str = "transactions"
    decisions: str = "decisions"
    labels: str = "labels"
    alerts: str = "drift-alerts"
    weights: str = "adapter-weights"
    registry: str = "adapter-registry"
    dlq: str = "transactions.dlq"
    monitor_stats: str = "monitor-stats"  # monitors of a group -> the one that judges (one partition)

    @staticmethod
    def env_var(field_name: str) -> str:
        """The environment variable that names a topic: ``alerts`` -> ``SELFHEAL_TOPIC_DRIFT_ALERTS``."""
        names = {"alerts": "DRIFT_ALERTS", "weights": "ADAPTER_WEIGHTS", "registry": "ADAPTER_REGISTRY"}
        return "SELFHEAL_TOPIC_" + names.get(field_name, field_name.upper())

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Topics:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = cls.env_var(f.name)
            if env.get(key):
                values[f.name] = env[key]
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The environment that makes ``from_env`` return these topics (for child processes)."""
        return {self.env_var(f.name): getattr(self, f.name) for f in fields(self)}

    def specs(self, replication: int = 1, partitions: int = 4) -> list[TopicSpec]:
        """Every topic with its config; ``partitions`` for the three keyed streams (the scorer
        group can use at most that many scorers), one for the rest."""
        compact = {"cleanup.policy": "compact", "max.message.bytes": str(MAX_MESSAGE_BYTES)}
        return [
            TopicSpec(self.transactions, partitions, replication),
            TopicSpec(self.decisions, partitions, replication),
            TopicSpec(self.labels, partitions, replication),
            TopicSpec(self.alerts, 1, replication),
            TopicSpec(self.weights, 1, replication, compact),
            TopicSpec(self.registry, 1, replication, compact),
            TopicSpec(self.dlq, 1, replication),
            TopicSpec(self.monitor_stats, 1, replication, {"retention.ms": str(STATS_RETENTION_MS)}),
        ]


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int = 1
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str | None = None  # None: start the embedded broker
    client: dict[str, str] = field(default_factory=dict)  # security and other librdkafka settings
    replication: int = 1
    partitions: int = 4  # of the transactions, decisions and labels topics it creates

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaSettings:
        env = os.environ if env is None else env
        client: dict[str, str] = {}
        for var, key in _NAMED.items():
            if env.get(var):
                client[key] = env[var]
        for var, value in env.items():
            if var.startswith("KAFKA_CONFIG_") and value:
                client[var[len("KAFKA_CONFIG_") :].lower().replace("_", ".")] = value
        return cls(
            bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS") or None,
            client=client,
            replication=int(env.get("SELFHEAL_TOPIC_REPLICATION", "1")),
            partitions=int(env.get("SELFHEAL_TOPIC_PARTITIONS", "4")),
        )

    def with_bootstrap(self, bootstrap: str) -> KafkaSettings:
        return KafkaSettings(bootstrap, dict(self.client), self.replication, self.partitions)

    def specs(self, topics: Topics) -> list[TopicSpec]:
        """The topics to create on this cluster: its replication factor and partition count."""
        return topics.specs(self.replication, self.partitions)

    def connection(self) -> dict[str, str | int | float | bool]:
        if not self.bootstrap_servers:
            raise ValueError("no bootstrap servers: start the embedded broker first")
        return {"bootstrap.servers": self.bootstrap_servers, **self.client}

    def redacted(self) -> dict[str, str | int | float | bool]:
        """The connection settings, safe to log."""
        return {k: ("***" if any(w in k for w in _SECRET_WORDS) else v) for k, v in self.connection().items()}


PRODUCER_DEFAULTS: dict[str, Any] = {
    "reconnect.backoff.max.ms": 1000,  # back within a second of a broker restart (default 10 s)
    "linger.ms": 5,
    "acks": "all",
    "enable.idempotence": False,  # idempotent producers break after an embedded-broker restart
    "message.max.bytes": MAX_MESSAGE_BYTES,
    "compression.type": "lz4",
}
CONSUMER_DEFAULTS: dict[str, Any] = {
    "reconnect.backoff.max.ms": 1000,
    "auto.offset.reset": "earliest",  # the embedded broker's end offsets are wrong: never "latest"
    "enable.auto.commit": True,  # commits what store_offsets stored ...
    "enable.auto.offset.store": False,  # ... which happens only after the output is delivered
    "auto.commit.interval.ms": 1000,  # a crash redoes at most ~1 s of stored input (+ max_commit_wait)
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 1000,
    # The embedded broker answers a fetch only when this runs out, data or not (measured:
    # one hop's p50 latency 141 ms at librdkafka's 500, 37 ms at 100, 16 ms at 10); a real
    # broker answers as soon as data arrives. The scorer, whose latency is the product's,
    # sets its own (ScorerConfig.fetch_wait_ms).
    "fetch.wait.max.ms": 100,
    # librdkafka (>= 2.4) stops fetching a partition for fetch.queue.backoff.ms (1 s) once
    # queued.min.messages (100,000) are fetched ahead: a consumer that drains faster then
    # runs dry for most of a second (a scorer on a backlog: 128,000 -> 185,000 tx/s).
    "fetch.queue.backoff.ms": 10,
    # A fetch that fails for a partition (the embedded broker, busy, answers some with an
    # error) is retried after fetch.error.backoff.ms: 500 ms of latency at the default.
    "fetch.error.backoff.ms": 10,
    "fetch.max.bytes": 16 * MAX_MESSAGE_BYTES,
    "max.partition.fetch.bytes": MAX_MESSAGE_BYTES,
}


def producer_config(settings: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    return {**PRODUCER_DEFAULTS, **overrides, **settings.connection()}


def consumer_config(settings: KafkaSettings, group: str | None, **overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {**CONSUMER_DEFAULTS, **overrides, **settings.connection()}
    if group is None:  # a reader that tracks nothing: assign() and read from the beginning
        cfg.update({"group.id": "selfheal-reader", "enable.auto.commit": False})
    else:
        cfg["group.id"] = group
    return cfg
