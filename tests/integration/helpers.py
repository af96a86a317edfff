"""Producing scenario rows and reading outputs back, for the integration tests."""

from __future__ import annotations

import time
import uuid

import numpy as np
import orjson
from confluent_kafka import Consumer, Message

from shared.kafka import KafkaSettings, Topics, TrackedProducer
from shared.kafka.clients import beginnings
from shared.kafka.config import consumer_config
from shared.messages import Transaction, encode_transaction


def unique_topics() -> Topics:
    """Every topic name with a suffix of its own (nothing created)."""
    tag = uuid.uuid4().hex[:8]
    return Topics(**{name: f"{value}-{tag}" for name, value in Topics().__dict__.items()})


def produce_rows(
    settings: KafkaSettings,
    topic: str,
    ids: list[str],
    X: np.ndarray,
    features: list[str],
    pause: float = 0.0,
    chunk: int = 50,
) -> None:
    producer = TrackedProducer(settings)
    for start in range(0, len(ids), chunk):
        for i in range(start, min(start + chunk, len(ids))):
            producer.produce(
                topic,
                encode_transaction(Transaction.from_row(ids[i], features, X[i].tolist(), time.time() * 1e3)),
                key=ids[i],
            )
        producer.poll(0)
        if pause:
            time.sleep(pause)
    producer.flush()


def read_n(settings: KafkaSettings, topic: str, n: int, timeout: float = 60.0) -> list[Message]:
    """The first ``n`` messages of ``topic`` (all partitions), waiting up to ``timeout``."""
    consumer = Consumer(consumer_config(settings, None))
    try:
        consumer.assign(beginnings(consumer, topic))
        out: list[Message] = []
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            out += [m for m in consumer.consume(1000, 0.2) if m.error() is None]
        return out
    finally:
        consumer.close()


def key(m: Message) -> str:
    k = m.key()
    assert isinstance(k, bytes)
    return k.decode()


def value(m: Message) -> bytes:
    return m.value() or b""


def reason(m: Message) -> str:
    headers = dict(m.headers() or [])
    r = headers["reason"]
    assert isinstance(r, bytes)
    return r.decode()


def headers(m: Message) -> dict[str, str]:
    """A record's headers as text."""
    pairs: list[tuple[str, bytes]] = m.headers() or []  # type: ignore[assignment]
    return {k: v.decode() for k, v in pairs}


def decision(
    tx_id: str, fraud: bool, shadow_fraud: bool, version: int, bundle: str, threshold: float
) -> bytes:
    """A decision as the scorer writes it (score 0 or 1), for feeding the healer by hand."""
    return orjson.dumps(
        {
            "id": tx_id,
            "score": float(fraud),
            "fraud": fraud,
            "threshold": threshold,
            "adapter_version": version,
            "bundle": bundle,
            "rules": [],
            "conflict": False,
            "shadow_score": float(shadow_fraud),
            "latency_ms": 1.0,
        }
    )
