"""The consume -> produce loop on the embedded broker: batches that do not wait to fill, and
offsets stored only for delivered output."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import orjson
from confluent_kafka import Consumer, TopicPartition

from services.bench.loads import PassthroughService
from shared.kafka import KafkaSettings, Topics, read_topic
from shared.kafka.clients import TrackedProducer, beginnings, group_consumer
from shared.kafka.config import consumer_config
from shared.kafka.runtime import OffsetCommitter, take_batch
from shared.kafka.timeline import ENV as TIMELINE_ENV
from shared.kafka.timeline import FIELDS

from .conftest import wait_until


def _produce(kafka: KafkaSettings, topic: str, n: int, prefix: str = "m") -> None:
    p = TrackedProducer(kafka)
    for i in range(n):
        p.produce(topic, f"{prefix}{i}".encode(), key=f"{prefix}{i}")
    p.flush()


def test_take_batch_returns_what_is_there_without_waiting_for_a_full_batch(
    kafka: KafkaSettings, topics: Topics
) -> None:
    _produce(kafka, topics.transactions, 7)
    consumer = Consumer(consumer_config(kafka, None))
    try:
        consumer.assign(beginnings(consumer, topics.transactions))
        got: list[bytes] = []
        t = time.monotonic()
        while len(got) < 7 and time.monotonic() - t < 20:
            got += [m.value() or b"" for m in take_batch(consumer, 500, timeout=30.0) if m.error() is None]
        # consume(500, 30) would have sat out its 30 s: only 7 messages exist
        assert sorted(got) == sorted(f"m{i}".encode() for i in range(7))
        assert time.monotonic() - t < 20
        assert take_batch(consumer, 500, timeout=0.1) == []
    finally:
        consumer.close()


def committed(kafka: KafkaSettings, group: str, topic: str) -> int:
    """The summed committed offsets of ``group`` on ``topic``'s partitions."""
    c = Consumer(consumer_config(kafka, group))
    try:
        parts = [TopicPartition(topic, tp.partition) for tp in beginnings(c, topic)]
        return sum(max(0, tp.offset) for tp in c.committed(parts, timeout=10))
    finally:
        c.close()


def test_offsets_are_stored_only_once_the_output_is_delivered(
    kafka: KafkaSettings, topics: Topics, group: str
) -> None:
    _produce(kafka, topics.transactions, 20)
    producer = TrackedProducer(kafka, **{"linger.ms": 200})  # output held back in the producer
    committer = OffsetCommitter(producer, max_wait=60.0)
    consumer = group_consumer(kafka, group, [topics.transactions], on_revoke=committer.on_revoke)
    try:
        handled: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(handled) < 20 and time.monotonic() < deadline:
            batch = [m for m in take_batch(consumer, 500, 0.5) if m.error() is None]
            for m in batch:
                producer.produce(topics.decisions, m.value(), key=m.key())
            handled += [m.value() or b"" for m in batch]
            committer.add(batch)
            committer.maybe_commit(consumer)
            if batch:
                assert len(producer) > 0  # lingering: nothing may be stored yet
                assert committer.commits == 0
        assert len(handled) == 20
        wait_until(lambda: producer.poll(0.05) >= 0 and len(producer) == 0, timeout=10)
        committer.maybe_commit(consumer)  # delivered now: stored without a flush
        assert committer.commits == 1
        consumer.commit(asynchronous=False)
        assert committed(kafka, group, topics.transactions) == 20
    finally:
        consumer.close()
    assert len(list(read_topic(kafka, topics.decisions))) == 20


def test_passthrough_service_copies_every_message_once_and_keeps_a_loop_timeline(
    kafka: KafkaSettings, topics: Topics, group: str, run_service, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv(TIMELINE_ENV, str(tmp_path))
    service = PassthroughService(kafka, topics.transactions, topics.decisions, group, port=0)
    running = run_service(service)
    _produce(kafka, topics.transactions, 300, prefix="p")
    wait_until(lambda: service.messages >= 300)
    running.halt()
    out = sorted(m.value() or b"" for m in read_topic(kafka, topics.decisions))
    assert out == sorted(f"p{i}".encode() for i in range(300))
    assert committed(kafka, group, topics.transactions) == 300
    # the timeline it wrote when it stopped: every message in one pass, and what each pass did
    (written,) = tmp_path.glob("passthrough-*.json")
    doc = orjson.loads(written.read_bytes())
    passes = np.asarray(doc["passes"])
    n = passes[:, FIELDS.index("n")]
    assert n.sum() == 300 and (n > 0).sum() == doc["summary"]["batches"] >= 1
    assert (passes[:, FIELDS.index("wait")] >= 0).all() and (passes[:, FIELDS.index("age_ms")] >= 0).all()
    assert np.all(np.diff(passes[:, FIELDS.index("start")]) > 0)  # in order
