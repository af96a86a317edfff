"""What every service does around its loop: connect (or start the embedded broker), create
the topics, and stop cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from shared.kafka.broker import EmbeddedBroker
from shared.kafka.clients import KafkaClientError, TrackedProducer, check, create_topics, group_consumer
from shared.kafka.config import KafkaSettings, Topics, TopicSpec
from shared.kafka.timeline import ENV as TIMELINE_ENV
from shared.kafka.timeline import LoopTimeline
from shared.log import get_logger
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
        created = create_topics(settings, settings.specs(topics))
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


class OffsetCommitter:
    """At-least-once bookkeeping for a consume -> produce loop, without waiting on the broker.

    The offsets of handled messages are stored (and then committed by auto-commit) only once
    the producer holds nothing undelivered: then every output queued before is delivered.
    The loop checks that between batches (``len(producer)``, no call to the broker), so it
    never stops to wait for acknowledgements -- a flush per batch halved the passthrough's
    throughput, and one every 100 ms put the broker's slowest acks (up to 400 ms measured on
    the embedded broker) into the latency. Only when the producer has not drained for
    ``max_wait`` seconds does it flush, so a crash redoes a bounded amount of input.
    A rebalance and the end of the loop flush (``on_revoke``, ``commit``).
    """

    def __init__(self, producer: TrackedProducer, max_wait: float = 1.0) -> None:
        self.producer, self.max_wait = producer, max_wait
        self._next: dict[tuple[str | None, int | None], int | None] = {}  # (topic, partition) -> last handled
        self._since: float | None = None  # when the oldest unstored offset was handled
        self._failed = producer.tracker.failed
        self.commits = 0

    def add(self, messages: list[Message]) -> None:
        """``messages`` are handled: their outputs are queued on the producer."""
        # the last message of each partition wins (a comprehension: this runs per message)
        self._next.update({(m.topic(), m.partition()): m.offset() for m in messages})
        if self._since is None:
            self._since = time.monotonic()

    def maybe_commit(self, consumer: Consumer) -> None:
        if not self._next:
            return
        if len(self.producer) == 0:
            self.producer.raise_failures_since(self._failed)
            self._store(consumer)
        elif self._since is not None and time.monotonic() - self._since >= self.max_wait:
            self.commit(consumer)

    def commit(self, consumer: Consumer) -> None:
        """Deliver every queued output (waiting), then store the offsets of everything handled."""
        self.producer.flush()
        self._failed = self.producer.tracker.failed
        self._store(consumer)

    def _store(self, consumer: Consumer) -> None:
        if self._next:
            consumer.store_offsets(
                offsets=[TopicPartition(t or "", p or 0, (o or 0) + 1) for (t, p), o in self._next.items()]
            )
            self._next.clear()
            self.commits += 1
        self._since = None

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.commit(consumer)
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as exc:  # nothing stored yet (_NO_OFFSET), or the group is gone
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                get_logger("kafka").warning("commit on revoke failed", error=str(exc))


def take_batch(consumer: Consumer, size: int, timeout: float) -> list[Message]:
    """Up to ``size`` messages, returning as soon as there is one: the first (waiting up to
    ``timeout``), then whatever else is already fetched. ``consume(size, timeout)`` would wait
    for ``size`` messages or the whole timeout -- latency for nothing under light load."""
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first, *consumer.consume(size - 1, 0)] if size > 1 else [first]


def batch_loop(
    consumer: Consumer,
    committer: OffsetCommitter,
    stop: StopFlag,
    handle: Callable[[list[Message]], None],
    batch_size: int,
    timeout: float,
    tick: Callable[[], None] | None = None,
    fill: bool = False,
    timeline: LoopTimeline | None = None,
) -> None:
    """take a batch (up to n, see :func:`take_batch`) -> ``handle`` the data messages ->
    store the offsets of what is delivered (see :class:`OffsetCommitter`) -- until stopped.

    ``fill``: wait for a full batch or the timeout (``consume(n, timeout)``): fewer, larger
    batches for services whose latency does not matter, and a loop that leaves the GIL to
    their worker threads (the healer heals on one). ``tick`` runs before every batch (the
    scorer swaps adapters there). The batch in hand is always finished: a stop takes
    effect between batches, and the last outputs are delivered and their offsets
    committed before the consumer leaves the group. ``timeline`` records every pass
    (:mod:`shared.kafka.timeline`).
    """
    producer, clock = committer.producer, time.perf_counter
    try:
        while not stop.is_set():
            t0 = clock()
            msgs = (
                consumer.consume(batch_size, timeout) if fill else take_batch(consumer, batch_size, timeout)
            )
            t1 = clock()
            if tick is not None:
                tick()
            t2 = clock()
            data = [m for m in msgs if check(m)]
            if data:
                handle(data)
                committer.add(data)
            t3 = clock()
            producer.poll(0)
            committer.maybe_commit(consumer)
            if timeline is not None:
                age = time.time() * 1e3 - data[0].timestamp()[1] if data else 0.0
                timeline.record(t0, t1, len(data), age, t2 - t1, t3 - t2, clock() - t3)
    finally:
        try:
            committer.commit(consumer)
        finally:
            consumer.close()  # commits the stored offsets and leaves the group


class TopicGuard(threading.Thread):
    """Every ``every`` seconds, on a thread of its own, checks that the service's topics exist
    and creates those that do not: the embedded broker keeps nothing across a restart. The
    loop calls :meth:`maybe_check` between batches, which costs it no call to the broker
    (a metadata request on the loop held a batch up for a round trip every two seconds, and
    for up to ``timeout`` while the broker was away); ``on_recreated`` runs there, on the
    loop's thread (the healer writes its registry and live adapter again). While the broker
    is away the check waits at most ``timeout`` and tries again later; librdkafka reconnects
    by itself."""

    def __init__(
        self,
        settings: KafkaSettings,
        specs: list[TopicSpec],
        on_recreated: Callable[[list[str]], None],
        every: float = 2.0,
        timeout: float = 2.0,
    ) -> None:
        super().__init__(name="topic-guard", daemon=True)
        self.settings, self.specs, self.on_recreated = settings, specs, on_recreated
        self.every, self.timeout = every, timeout
        self._admin: AdminClient | None = AdminClient(settings.connection())
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._pending: list[str] = []  # recreated, not yet reported to the loop
        self.recreated = 0

    def run(self) -> None:
        while not self._stopping.wait(self.every):
            try:
                self._check()
            except (KafkaException, KafkaClientError) as exc:  # tried again, never fatal
                get_logger("kafka").warning("topic check failed", error=str(exc))

    def _check(self) -> None:
        if (admin := self._admin) is None:
            return
        try:
            names = set(admin.list_topics(timeout=self.timeout).topics)
        except KafkaException:
            return  # the broker is away: check again later
        missing = [s for s in self.specs if s.name not in names]
        if missing:
            create_topics(self.settings, missing, timeout=10.0)
            with self._lock:
                self._pending += [s.name for s in missing]
                self.recreated += 1

    def stop(self, timeout: float | None = None) -> None:
        """Ask the thread to end; with ``timeout``, wait for it and let its admin client go
        (an AdminClient has no close: it ends when the last reference does)."""
        self._stopping.set()
        if timeout is not None and self.is_alive():
            self.join(timeout)
        if timeout is not None and not self.is_alive():
            self._admin = None

    def maybe_check(self) -> None:
        """On the loop: report topics the thread recreated since the last call."""
        if not self._pending:
            return
        with self._lock:
            names, self._pending = self._pending, []
        self.on_recreated(names)


class ConsumerService:
    """The life of every selfheal service: serve /metrics and /health, ``on_start``, then the
    batch loop over ``inputs()`` with ``handle`` and ``tick``, and ``on_stop`` however it ends.

    Every few seconds it also checks that its topics exist (:class:`TopicGuard`).

    A subclass sets ``settings``, ``topics``, ``config`` (``group``, ``batch_size``, ``poll_timeout``,
    ``max_commit_wait``, ``metrics_port``), ``metrics`` (``registry`` and a ``lag`` gauge), ``producer`` and
    ``log``, and implements ``inputs``, ``handle`` and ``health``.
    """

    settings: KafkaSettings
    config: Any
    metrics: Any
    producer: TrackedProducer
    log: Any
    topics: Topics
    server: MetricsServer | None = None
    fill_batches: bool = True  # consume(n, timeout); the scorer takes what is there (latency)
    assigned: int = 0  # partitions this instance owns now
    stall_after: float = 60.0  # seconds without a pass of the loop before /health says "stalled"
    _passed_at: float | None = None  # monotonic time of the loop's last pass (None: not started)
    _committer: OffsetCommitter

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned = len(partitions)
        self.log.info("partitions assigned", count=len(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned = 0
        self._committer.on_revoke(consumer, partitions)

    def inputs(self) -> list[str]:
        raise NotImplementedError

    def handle(self, data: list[Message]) -> None:
        raise NotImplementedError

    def health(self) -> dict[str, Any]:
        raise NotImplementedError

    def consumer_overrides(self) -> dict[str, Any]:
        """librdkafka settings of this service's group consumer, over the defaults."""
        return {}

    def tick(self) -> None:
        """Between batches (the scorer swaps adapters here, the healer runs heals)."""

    def on_start(self) -> None:
        """Before the first batch."""

    def on_stop(self) -> None:
        """After the last batch, before the metrics server goes."""

    def on_topics_recreated(self, names: list[str]) -> None:
        """The broker had lost ``names`` (a memory-only broker restarted); they exist again."""
        self.log.warning("topics recreated: the broker had lost them", topics=names)

    def topic_specs(self) -> list[TopicSpec]:
        """The topics this service recreates when the broker lost them: all of selfheal's but
        the two the healer writes (``adapter-weights``, ``adapter-registry``): the healer alone
        recreates those, so that it knows to write its registry and live adapter again."""
        t: Topics = self.topics
        return [s for s in self.settings.specs(t) if s.name not in (t.weights, t.registry)]

    def _tick(self) -> None:
        self._passed_at = time.monotonic()
        self._guard.maybe_check()
        self.tick()

    def served_health(self) -> dict[str, Any]:
        """``/health``: the service's own state, with ``status`` ``starting`` until its loop
        makes a first pass and ``stalled`` once it has made none for ``stall_after`` seconds
        (both answered 503: Kubernetes' readiness and liveness probes read it)."""
        state = self.health()
        if self._passed_at is None:
            return {**state, "status": "starting"}
        age = time.monotonic() - self._passed_at
        state["loop_age_s"] = round(age, 3)
        if age > self.stall_after:
            state["status"] = "stalled"
        return state

    def run(self, stop: StopFlag) -> None:
        if self.config.metrics_port is not None:
            self.server = MetricsServer(
                self.metrics.registry, self.served_health, self.config.metrics_port
            ).start()
            self.log.info("metrics served", port=self.server.port)
        self.on_start()
        inputs = self.inputs()
        self._guard = TopicGuard(self.settings, self.topic_specs(), self.on_topics_recreated)
        self._guard.start()
        committer = self._committer = OffsetCommitter(self.producer, self.config.max_commit_wait)
        consumer = group_consumer(
            self.settings,
            self.config.group,
            inputs,
            on_lag=self.metrics.lag.set,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            **self.consumer_overrides(),
        )
        self.log.info("consuming", topics=inputs, group=self.config.group)
        timeline = LoopTimeline().attach() if os.environ.get(TIMELINE_ENV) else None
        # Everything built so far (torch, the model, the bundle: ~170,000 objects) lives as
        # long as the process: out of the collector's sight, a full collection takes
        # microseconds instead of pausing a batch for ~90 ms (measured in a scorer).
        gc.collect()
        gc.freeze()
        try:
            batch_loop(
                consumer,
                committer,
                stop,
                self.handle,
                self.config.batch_size,
                self.config.poll_timeout,
                tick=self._tick,
                fill=self.fill_batches,
                timeline=timeline,
            )
        finally:
            self._guard.stop(timeout=self._guard.timeout + 1.0)
            if timeline is not None:
                timeline.detach()
                written = timeline.write(os.environ[TIMELINE_ENV], self.health().get("service", "service"))
                self.log.info("loop timeline written", path=str(written))
            self.on_stop()
            if self.server is not None:
                self.server.stop()
            self.log.info("stopped", **self.health())
            self.producer.close()
            gc.unfreeze()  # what was frozen at start may go (services that share a process)
