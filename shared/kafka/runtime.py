"""What every service does around its loop: connect (or start the embedded broker), create
the topics, and stop cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from shared.kafka.broker import EmbeddedBroker
from shared.kafka.clients import create_topics
from shared.kafka.config import KafkaSettings, Topics


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
