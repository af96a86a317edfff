"""Thin wrappers over confluent-kafka: topic creation, a delivery-tracking producer, readers.

Kafka boilerplate lives here once; the services are loops over these pieces.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from shared.errors import SelfhealError
from shared.kafka.config import KafkaSettings, TopicSpec, consumer_config, producer_config
from shared.log import get_logger
from shared.messages import DeadLetter, Reject


class KafkaClientError(SelfhealError):
    """A Kafka operation failed (delivery, topic creation, connection)."""


def create_topics(settings: KafkaSettings, specs: list[TopicSpec], timeout: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet (with their configs); returns those created."""
    admin = AdminClient(settings.connection())
    existing = set(admin.list_topics(timeout=timeout).topics)
    new = [
        NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication, config=s.config)
        for s in specs
        if s.name not in existing
    ]
    if not new:
        return []
    created = []
    for name, fut in admin.create_topics(new, request_timeout=timeout).items():
        try:
            fut.result(timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise KafkaClientError(f"cannot create topic {name!r}: {exc}") from exc
    return created


def wait_for_topics(settings: KafkaSettings, names: list[str], timeout: float = 30.0) -> None:
    admin = AdminClient(settings.connection())
    deadline = time.monotonic() + timeout
    while True:
        topics = admin.list_topics(timeout=timeout).topics
        if all(n in topics and topics[n].partitions for n in names):
            return
        if time.monotonic() > deadline:
            raise KafkaClientError(f"topics {names} did not appear within {timeout:.0f} s")
        time.sleep(0.1)


class DeliveryTracker:
    """Counts failed deliveries of one producer (librdkafka reports only errors: a Python
    call per delivered message costs more than the rest of the scorer's path)."""

    def __init__(self) -> None:
        self.failed = 0
        self.last_error: str | None = None

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failed += 1
            self.last_error = f"{msg.topic()}: {err}"


class TrackedProducer:
    """A producer that retries on a full queue and reports failed deliveries at ``flush``."""

    def __init__(self, settings: KafkaSettings, **overrides: Any) -> None:
        self.tracker = DeliveryTracker()
        config = {"delivery.report.only.error": True, "on_delivery": self.tracker, **overrides}
        self._producer = Producer(producer_config(settings, **config))
        self._closed = False

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | str | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {"key": key, "headers": headers}
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                self._producer.produce(topic, value, **kwargs)
                return
            except BufferError:
                self._producer.poll(0.05)  # the local queue is full: serve callbacks, retry

    def produce_many(self, topic: str, values: Sequence[bytes], keys: Sequence[str | bytes]) -> None:
        """``produce`` for many keyed values: the scorer's hot path, one Python frame per batch."""
        produce = self._producer.produce
        for value, key in zip(values, keys, strict=True):
            try:
                produce(topic, value, key)
            except BufferError:
                self.produce(topic, value, key)

    def poll(self, timeout: float = 0.0) -> int:
        return int(self._producer.poll(timeout))

    def __len__(self) -> int:
        """Messages queued or in flight."""
        return len(self._producer)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait for every message; raise if any was not delivered."""
        before = self.tracker.failed
        remaining = self._producer.flush(timeout)
        if remaining:
            raise KafkaClientError(f"{remaining} messages not delivered within {timeout:.0f} s")
        self.raise_failures_since(before)

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (at most ``timeout``; what is left then is dropped and
        counted as failed), then let the client go: a librdkafka client left open keeps
        reconnecting to its broker. Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._producer.flush(timeout):
                self._producer.purge()
                self._producer.flush(0)  # serve the purged messages' delivery reports
        finally:
            self._producer.close()

    def raise_failures_since(self, failed_before: int) -> None:
        """Raise if a delivery failed after the tracker counted ``failed_before`` failures."""
        if self.tracker.failed > failed_before:
            raise KafkaClientError(f"delivery failed: {self.tracker.last_error}")


def dead_letter(producer: TrackedProducer, topic: str, msg: Message, reason: Reject, service: str) -> None:
    """Send ``msg`` to the dead-letter ``topic`` as it came (value and key), with the headers
    of :class:`shared.messages.DeadLetter`: every input offset ends as an output or a dead
    letter that says where it came from and why."""
    letter = DeadLetter(reason, service, msg.topic() or "", msg.partition() or 0, msg.offset() or 0)
    producer.produce(topic, msg.value(), key=msg.key(), headers=letter.headers())


def group_consumer(
    settings: KafkaSettings,
    group: str,
    topics: list[str],
    on_lag: Callable[[int], None] | None = None,
    on_assign: Callable[[Consumer, list[TopicPartition]], None] | None = None,
    on_revoke: Callable[[Consumer, list[TopicPartition]], None] | None = None,
    **overrides: Any,
) -> Consumer:
    """A consumer in ``group`` subscribed to ``topics``; ``on_lag`` gets the summed consumer
    lag every 5 s from librdkafka's statistics (right on a real cluster; the embedded broker
    reports wrong end offsets). ``on_assign``/``on_revoke`` run inside ``consume`` when the
    group rebalances."""
    if on_lag is not None:
        overrides = {
            "statistics.interval.ms": 5000,
            "stats_cb": lambda s: _report_lag(s, on_lag),
            **overrides,
        }
    consumer = Consumer(consumer_config(settings, group, **overrides))
    callbacks: dict[str, Any] = {}
    if on_assign is not None:
        callbacks["on_assign"] = on_assign
    if on_revoke is not None:
        callbacks["on_revoke"] = on_revoke
    consumer.subscribe(topics, **callbacks)
    return consumer


def lag_from_stats(stats_json: str) -> int | None:
    """Summed ``consumer_lag`` of the assigned partitions in a librdkafka statistics document."""
    try:
        stats = json.loads(stats_json)
    except ValueError:
        return None
    total, seen = 0, False
    for topic in stats.get("topics", {}).values():
        for pid, part in topic.get("partitions", {}).items():
            lag = part.get("consumer_lag", -1)
            if pid != "-1" and isinstance(lag, int) and lag >= 0:
                total, seen = total + lag, True
    return total if seen else None


def _report_lag(stats_json: str, on_lag: Callable[[int], None]) -> None:
    lag = lag_from_stats(stats_json)
    if lag is not None:
        on_lag(lag)


def check(msg: Message) -> bool:
    """True for a data message; False for events to skip (logged unless routine); raises on
    fatal errors."""
    err = msg.error()
    if err is None:
        return True
    if err.code() in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
        return False  # routine: end of a partition, a topic still being created
    if err.fatal():
        raise KafkaClientError(f"consumer error: {err}")
    get_logger("kafka").warning(
        "consumer error",
        error=str(err),
        retriable=err.retriable(),
        topic=msg.topic(),
        partition=msg.partition(),
    )
    return False


def beginnings(consumer: Consumer, topic: str, timeout: float = 10.0) -> list[TopicPartition]:
    """Every partition of ``topic`` at offset 0 (empty if the topic does not exist yet)."""
    meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        return []
    return [TopicPartition(topic, p, 0) for p in meta.partitions]


def read_topic(
    settings: KafkaSettings,
    topic: str,
    timeout: float = 10.0,
    stop: Callable[[], bool] | None = None,
    settle: float = 0.0,
) -> Iterator[Message]:
    """Every message of ``topic`` from the beginning to its current end (by partition EOF).

    ``settle``: after every partition reported its end, keep reading until this many seconds
    pass without a message (the embedded broker can report an end before the last acknowledged
    records are readable; its end offsets cannot be trusted either)."""
    consumer = Consumer(consumer_config(settings, None, **{"enable.partition.eof": True}))
    try:
        parts = beginnings(consumer, topic, timeout)
        if not parts:
            return
        consumer.assign(parts)
        done: set[int] = set()
        deadline = time.monotonic() + timeout
        quiet_until: float | None = None
        while time.monotonic() < deadline and not (stop and stop()):
            if len(done) == len(parts):
                quiet_until = quiet_until or time.monotonic() + settle
                if time.monotonic() >= quiet_until:
                    return
            for msg in consumer.consume(500, 0.1 if quiet_until else 0.2):
                err = msg.error()
                if err is not None and err.code() == KafkaError._PARTITION_EOF:
                    done.add(msg.partition() or 0)
                elif check(msg):
                    quiet_until = None
                    yield msg
    finally:
        consumer.close()


def record_ts(msg: Message) -> float:
    """A record's timestamp (epoch ms): event time for a record that carries none."""
    kind, value = msg.timestamp()
    return float(value) if kind != TIMESTAMP_NOT_AVAILABLE and value > 0 else time.time() * 1e3
