"""The load generator: a scenario's stream onto ``transactions`` at a given rate, and each
label onto ``labels`` later (late truth, like chargebacks).

Event time: with ``event_rate`` the transactions are stamped as if they happened at that
many a second from ``start_ms`` (a replay: "labels two hours late" at 50 tx/s of event
time is 360,000 transactions, produced as fast as ``rate`` allows); without it they are
stamped with the wall clock. A label's delay is a count of transactions or a span of event
time (:class:`~shared.units.Delay`); each label carries the event time it arrives at.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from shared.data.shapes import Stream
from shared.kafka.clients import TrackedProducer
from shared.kafka.config import KafkaSettings, Topics
from shared.messages import Label, Transaction, encode_label, encode_transaction
from shared.units import Delay


def produce_stream(
    settings: KafkaSettings,
    topics: Topics,
    stream: Stream,
    features: list[str],
    rate: float = 2000.0,
    label_delay: Delay | int | None = 500,
    progress: Callable[[int], None] | None = None,
    stop: Callable[[], bool] | None = None,
    event_rate: float | None = None,
    start_ms: float | None = None,
) -> int:
    """Produce every row (ids, features, ts); returns how many were produced.

    ``rate`` is transactions per second (0: as fast as possible); ``label_delay=None``
    sends no labels. Labels still owed at the end are sent then.
    """
    delay = Delay(rows=label_delay) if isinstance(label_delay, int) else label_delay
    producer = TrackedProducer(settings)
    start = time.monotonic()
    t0 = start_ms if start_ms is not None else time.time() * 1e3
    ts = np.zeros(len(stream), dtype=np.float64)
    labelled = 0
    n = len(stream)
    chunk = 100
    for lo in range(0, n, chunk):
        if stop is not None and stop():
            n = lo
            break
        hi = min(lo + chunk, n)
        wall = time.time() * 1e3
        for i in range(lo, hi):
            tx_id = str(stream.ids[i])
            ts[i] = t0 + i * 1e3 / event_rate if event_rate else wall
            row = (
                Transaction(tx_id, stream.raw[i], float(ts[i]))  # a schema scenario: its raw fields
                if stream.raw is not None
                else Transaction.from_row(tx_id, features, stream.X[i].tolist(), float(ts[i]))
            )
            producer.produce(topics.transactions, encode_transaction(row), key=tx_id)
        if delay is not None:
            now = float(ts[hi - 1]) if event_rate else time.time() * 1e3
            due = _due(delay, ts, labelled, hi, now)
            labelled = _labels(producer, topics.labels, stream, labelled, due, now)
        producer.poll(0)
        if progress is not None:
            progress(hi)
        if rate > 0:
            ahead = hi / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
    if delay is not None:
        now = float(ts[n - 1]) if event_rate and n else time.time() * 1e3
        _labels(producer, topics.labels, stream, labelled, n, now)
    producer.flush()
    return n


def _due(delay: Delay, ts: np.ndarray, labelled: int, hi: int, now: float) -> int:
    """Rows below the returned position are owed their label once ``hi`` rows are out."""
    if delay.rows is not None:
        return max(labelled, hi - delay.rows)
    return max(labelled, int(np.searchsorted(ts[:hi], now - (delay.ms or 0.0), side="right")))


def _labels(producer: TrackedProducer, topic: str, stream: Stream, lo: int, hi: int, now: float) -> int:
    """The labels of stream rows ``lo`` to ``hi``, stamped ``now``; returns ``hi``."""
    for i in range(lo, hi):
        tx_id = str(stream.ids[i])
        producer.produce(topic, encode_label(Label(tx_id, int(stream.y[i]), now)), key=tx_id)
    return max(lo, hi)
