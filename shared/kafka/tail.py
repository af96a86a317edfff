"""Reading topics from the beginning on a thread, as long as a run lasts: the demo's live
report, the benchmark's latency instrument, ``selfheal watch``.

A message is taken the moment it is there (``poll`` returns with one; ``consume(n, t)``
would wait for ``n`` or ``t``), with fetches held at most ``fetch_wait_ms`` by the broker:
the consumers' 100 ms by default; the benchmark's latency instrument asks for 5 ms, as the
scorer does (the embedded broker answers a fetch only when that time runs out, so a short
wait costs it CPU: the demo's live report keeps the default, leaving the cores to the
stack). ``handle`` gets each batch of data messages with the wall-clock time (epoch ms) it
was received, on the tail's thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from confluent_kafka import Consumer, Message

from shared.kafka.clients import beginnings, check
from shared.kafka.config import KafkaSettings, consumer_config

Handler = Callable[[list[Message], float], None]


class TopicTail:
    def __init__(
        self, settings: KafkaSettings, topics: Sequence[str], handle: Handler, fetch_wait_ms: int = 100
    ) -> None:
        self.settings, self.topics, self.handle = settings, list(topics), handle
        self.fetch_wait_ms = fetch_wait_ms
        self.lock = threading.Lock()  # held while ``handle`` runs: readers of its results take it too
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="topic-tail", daemon=True)

    def start(self) -> TopicTail:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def __enter__(self) -> TopicTail:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        consumer = Consumer(consumer_config(self.settings, None, **{"fetch.wait.max.ms": self.fetch_wait_ms}))
        try:
            consumer.assign([tp for t in self.topics for tp in beginnings(consumer, t)])
            while not self._stop.is_set():
                first = consumer.poll(0.05)
                if first is None:
                    continue
                now = time.time() * 1e3
                data = [m for m in [first, *consumer.consume(1000, 0)] if check(m)]
                with self.lock:
                    self.handle(data, now)
        finally:
            consumer.close()
