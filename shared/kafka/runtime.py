"""What every service does around its loop: connect (or start the embedded broker), create
the topics, and stop cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition

from shared.kafka.broker import EmbeddedBroker
from shared.kafka.clients import TrackedProducer, check, create_topics, group_consumer
from shared.kafka.config import KafkaSettings, Topics
from shared.observability import MetricsServer


@contextmanager
def kafka_session(settings: KafkaSettings, topics: Topics, log: Any) -> Iterator[KafkaSettings]:
    """Yield connected settings; with no bootstrap servers, an embedded broker for the session."""
    broker = None
    if settings.bootstrap_servers is None:
        broker = EmbeddedBroker().start()
        settings = settings.with_bootstrap(broker.bootstrap)
        log.info("embedded broker started", bootstrap=broker.bootstrap, pid=broker.pid)
    try:
        created = create_topics(settings, topics.specs(settings.replication))
        log.info("connected", kafka=settings.redacted(), topics_created=created)
        yield settings
    finally:
        if broker is not None:
            broker.stop()
            log.info("embedded broker stopped")


class StopFlag:
    """Set by SIGTERM or SIGINT (when installed from the main thread) or by ``set()``."""

    def __init__(self, install: bool = True) -> None:
        self._event = threading.Event()
        if install and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._handler)
            signal.signal(signal.SIGINT, self._handler)

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self._event.set()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


def store_offsets(consumer: Consumer, messages: list[Message]) -> None:
    """Store the offset after the last of ``messages`` per partition (committed by auto-commit)."""
    last: dict[tuple[str, int], int] = {}
    for m in messages:
        last[(m.topic() or "", m.partition() or 0)] = m.offset() or 0
    consumer.store_offsets(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()])


def batch_loop(
    consumer: Consumer,
    producer: TrackedProducer,
    stop: StopFlag,
    handle: Callable[[list[Message]], None],
    batch_size: int,
    timeout: float,
    tick: Callable[[], None] | None = None,
) -> None:
    """consume(n, timeout) -> ``handle`` the data messages -> flush -> store offsets, until stopped.

    ``tick`` runs before every batch (the scorer swaps adapters there). The batch in hand
    is always finished: a stop takes effect between batches.
    """
    try:
        while not stop.is_set():
            msgs = consumer.consume(batch_size, timeout)
            if tick is not None:
                tick()
            data = [m for m in msgs if check(m)]
            if data:
                handle(data)
                producer.flush()  # every output delivered before any input offset is stored
                store_offsets(consumer, data)
            else:
                producer.poll(0)
    finally:
        producer.flush()
        consumer.close()  # commits the stored offsets and leaves the group


class ConsumerService:
    """The life of every selfheal service: serve /metrics and /health, ``on_start``, then the
    batch loop over ``inputs()`` with ``handle`` and ``tick``, and ``on_stop`` however it ends.

    A subclass sets ``settings``, ``config`` (``group``, ``batch_size``, ``poll_timeout``,
    ``metrics_port``), ``metrics`` (``registry`` and a ``lag`` gauge), ``producer`` and
    ``log``, and implements ``inputs``, ``handle`` and ``health``.
    """

    settings: KafkaSettings
    config: Any
    metrics: Any
    producer: TrackedProducer
    log: Any
    server: MetricsServer | None = None

    def inputs(self) -> list[str]:
        raise NotImplementedError

    def handle(self, data: list[Message]) -> None:
        raise NotImplementedError

    def health(self) -> dict[str, Any]:
        raise NotImplementedError

    def tick(self) -> None:
        """Between batches (the scorer swaps adapters here, the healer runs heals)."""

    def on_start(self) -> None:
        """Before the first batch."""

    def on_stop(self) -> None:
        """After the last batch, before the metrics server goes."""

    def run(self, stop: StopFlag) -> None:
        if self.config.metrics_port is not None:
            self.server = MetricsServer(self.metrics.registry, self.health, self.config.metrics_port).start()
            self.log.info("metrics served", port=self.server.port)
        self.on_start()
        inputs = self.inputs()
        consumer = group_consumer(self.settings, self.config.group, inputs, on_lag=self.metrics.lag.set)
        self.log.info("consuming", topics=inputs, group=self.config.group)
        try:
            batch_loop(
                consumer,
                self.producer,
                stop,
                self.handle,
                self.config.batch_size,
                self.config.poll_timeout,
                tick=self.tick,
            )
        finally:
            self.on_stop()
            if self.server is not None:
                self.server.stop()
            self.log.info("stopped", **self.health())
