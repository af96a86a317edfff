"""What only a real Apache Kafka does, checked on one (a container; skipped with the reason
where no Docker engine answers): the adapter topics are compacted, so a scorer that starts
late reads each adapter's newest record and not its history; the decision stream is a
delete-policy topic whose old records go.

The broker's cleaner and retention check run every second here (Kafka's defaults: 15 s and
5 minutes) and the topics roll segments every 200 ms, so both happen within the test.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]  # re-exported, untyped

from shared.kafka import KafkaSettings, create_topics
from shared.kafka.clients import TrackedProducer
from shared.kafka.config import TopicSpec, consumer_config
from tests.integration.helpers import unique_topics
from tests.kafka_container import docker_unavailable, kafka_container

FAST = {"KAFKA_LOG_CLEANER_BACKOFF_MS": "1000", "KAFKA_LOG_RETENTION_CHECK_INTERVAL_MS": "1000"}
ROLL = {"segment.ms": "200", "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "100"}


@pytest.fixture(scope="module")
def real_kafka() -> Iterator[KafkaSettings]:
    if why := docker_unavailable():
        pytest.skip(f"a real Kafka needs a Docker engine: {why}")
    with kafka_container(FAST) as bootstrap:
        yield KafkaSettings().with_bootstrap(bootstrap)


def configs(settings: KafkaSettings, topic: str) -> dict[str, str]:
    admin = AdminClient(settings.connection())
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    got = admin.describe_configs([res])[res].result(30)
    return {name: entry.value for name, entry in got.items()}


def read_all(settings: KafkaSettings, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """Every record on partition 0 from its earliest offset: (key, value)."""
    consumer = Consumer(consumer_config(settings, None))
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
        consumer.assign([TopicPartition(topic, 0, low)])
        out: list[tuple[bytes | None, bytes | None]] = []
        while low + len(out) < high:
            msgs = consumer.consume(500, 5.0)
            if not msgs:
                break
            out += [(m.key(), m.value()) for m in msgs if m.error() is None]
        return out
    finally:
        consumer.close()


def wait_for(check: Callable[[], bool], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the broker did not get there in time"
        time.sleep(1.0)


def test_the_topics_selfheal_creates_carry_their_config_on_a_real_broker(real_kafka: KafkaSettings) -> None:
    t = unique_topics()
    create_topics(real_kafka, real_kafka.specs(t))
    for name in (t.weights, t.registry):
        assert configs(real_kafka, name)["cleanup.policy"] == "compact", name
    for name in (t.transactions, t.decisions, t.labels, t.alerts, t.dlq):
        assert configs(real_kafka, name)["cleanup.policy"] == "delete", name


def test_the_adapter_topic_keeps_only_each_adapters_newest_record(real_kafka: KafkaSettings) -> None:
    t = unique_topics()
    spec = next(s for s in real_kafka.specs(t) if s.name == t.weights)
    create_topics(real_kafka, [TopicSpec(spec.name, spec.partitions, spec.replication, spec.config | ROLL)])
    producer = TrackedProducer(real_kafka)
    for version in range(1, 41):  # one key: the live adapter, rewritten by every heal
        producer.produce(t.weights, f"adapter v{version}".encode(), key=b"adapter")
    producer.produce(t.weights, b"peer", key=b"other-bundle")
    producer.flush()
    time.sleep(1.0)
    producer.produce(t.weights, b"adapter v41", key=b"adapter")  # rolls the segment the rest sits in
    producer.flush()
    producer.close()

    wait_for(lambda: len(read_all(real_kafka, t.weights)) <= 3)  # the cleaned segment's two, the new one
    assert dict(read_all(real_kafka, t.weights)) == {b"adapter": b"adapter v41", b"other-bundle": b"peer"}


def test_old_decisions_are_deleted(real_kafka: KafkaSettings) -> None:
    t = unique_topics()
    spec = next(s for s in real_kafka.specs(t) if s.name == t.decisions)
    keep = {"retention.ms": "1000", "segment.ms": "200"}
    create_topics(real_kafka, [TopicSpec(spec.name, 1, spec.replication, spec.config | keep)])
    producer = TrackedProducer(real_kafka)
    for i in range(100):
        producer.produce(t.decisions, b"{}", key=f"tx-{i}")
    producer.flush()
    time.sleep(2.0)
    producer.produce(t.decisions, b"{}", key="tx-last")  # rolls the segment
    producer.flush()
    producer.close()

    wait_for(lambda: len(read_all(real_kafka, t.decisions)) <= 1)  # the active segment's record, at most
