"""With ``--kafka container`` the stacks these tests start share one Kafka container, where
an embedded broker would start empty each time: each test, and each module fixture that
starts a stack (:func:`fresh_topics`), gets topics of its own (``SELFHEAL_TOPIC_*``)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.kafka_container import CONTAINER, fresh_topics


@pytest.fixture(scope="session", autouse=True)
def container(request: pytest.FixtureRequest) -> Iterator[None]:
    """Start the session's container before any stack (or skip every e2e test with why)."""
    if request.config.getoption("--kafka") != "container":
        yield
        return
    request.getfixturevalue("kafka_bootstrap")
    os.environ[CONTAINER] = "1"
    yield
    os.environ.pop(CONTAINER, None)


@pytest.fixture(autouse=True)
def own_topics() -> None:
    fresh_topics()
