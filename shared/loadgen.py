"""The load generator: a scenario's stream onto ``transactions`` at a given rate, and each
label onto ``labels`` ``label_delay`` transactions later (late truth, like chargebacks)."""

from __future__ import annotations

import time
from collections.abc import Callable

from shared.data.scenarios import Stream
from shared.kafka.clients import TrackedProducer
from shared.kafka.config import KafkaSettings, Topics
from shared.messages import Label, Transaction, encode_label, encode_transaction


def produce_stream(
    settings: KafkaSettings,
    topics: Topics,
    stream: Stream,
    features: list[str],
    rate: float = 2000.0,
    label_delay: int | None = 500,
    progress: Callable[[int], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> int:
    """Produce every row (ids, features, ts); returns how many were produced.

    ``rate`` is transactions per second (0: as fast as possible); ``label_delay=None``
    sends no labels. Labels still owed at the end are sent then.
    """
    producer = TrackedProducer(settings)
    start = time.monotonic()
    labelled = 0
    n = len(stream)
    chunk = 100
    for lo in range(0, n, chunk):
        if stop is not None and stop():
            n = lo
            break
        hi = min(lo + chunk, n)
        now_ms = time.time() * 1e3
        for i in range(lo, hi):
            tx_id = str(stream.ids[i])
            producer.produce(
                topics.transactions,
                encode_transaction(Transaction.from_row(tx_id, features, stream.X[i].tolist(), now_ms)),
                key=tx_id,
            )
        if label_delay is not None and hi - label_delay > labelled:
            labelled = _labels(producer, topics.labels, stream, labelled, hi - label_delay)
        producer.poll(0)
        if progress is not None:
            progress(hi)
        if rate > 0:
            ahead = hi / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
    if label_delay is not None:
        _labels(producer, topics.labels, stream, labelled, n)
    producer.flush()
    return n


def _labels(producer: TrackedProducer, topic: str, stream: Stream, lo: int, hi: int) -> int:
    """The labels of stream rows ``lo`` to ``hi``; returns ``hi``."""
    for i in range(lo, hi):
        tx_id = str(stream.ids[i])
        producer.produce(topic, encode_label(Label(tx_id, int(stream.y[i]))), key=tx_id)
    return hi
