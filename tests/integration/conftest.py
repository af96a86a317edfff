"""A real broker for integration tests: the embedded Tansu broker, one per session; fresh,
uuid-named topics and groups per test."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from shared.kafka import EmbeddedBroker, KafkaSettings, Topics, create_topics
from shared.kafka.runtime import StopFlag
from shared.signing import KEY_ENV, Signer
from tests.integration.helpers import unique_topics

TEST_KEY = "integration-tests-adapter-key-0123456789abcdef"
TEST_SIGNER = Signer(TEST_KEY.encode())


@pytest.fixture(scope="session")
def kafka(kafka_bootstrap: str | None) -> Iterator[KafkaSettings]:
    """The embedded broker, or the session's Kafka container (``--kafka container``)."""
    torch.set_num_threads(1)  # several services share this process, as they share a machine
    if kafka_bootstrap is not None:
        yield KafkaSettings().with_bootstrap(kafka_bootstrap)
        return
    with EmbeddedBroker() as broker:
        yield KafkaSettings().with_bootstrap(broker.bootstrap)


@pytest.fixture
def signer(monkeypatch: pytest.MonkeyPatch) -> Signer:
    """The adapter signing key, also in the environment (for the CLI and child processes)."""
    monkeypatch.setenv(KEY_ENV, TEST_KEY)
    return TEST_SIGNER


@pytest.fixture
def topics(kafka: KafkaSettings) -> Topics:
    t = unique_topics()
    create_topics(kafka, t.specs())
    return t


@pytest.fixture
def group() -> str:
    return f"g-{uuid.uuid4().hex[:8]}"


@dataclass
class Running:
    service: Any
    stop: StopFlag
    thread: threading.Thread

    def halt(self, timeout: float = 30.0) -> None:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "service did not stop"


@pytest.fixture
def run_service() -> Iterator[Callable[[Any], Running]]:
    """Start ``service.run(stop)`` on a thread; every one still running is stopped at teardown."""
    started: list[Running] = []

    def start(service: Any) -> Running:
        stop = StopFlag(install=False)
        thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
        thread.start()
        r = Running(service, stop, thread)
        started.append(r)
        return r

    yield start
    for r in started:
        if r.thread.is_alive():
            r.halt()


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
