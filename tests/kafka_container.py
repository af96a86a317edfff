"""A real Apache Kafka for the tests, where a Docker engine answers (testcontainers).

The broker is the one ``deploy/compose.yaml`` runs (its image and settings: KRaft, one node),
with its client listener published on a free local port and advertised there. Without a
Docker engine :func:`docker_unavailable` says why, and the tests that need the container
skip with that reason; the embedded broker serves the rest.

``--kafka container`` (or ``SELFHEAL_TEST_KAFKA=container``) runs the integration and e2e
suites against one such container instead of the embedded broker.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

import yaml

from shared.kafka import Topics
from tests.integration.helpers import unique_topics

COMPOSE = Path(__file__).resolve().parents[1] / "deploy" / "compose.yaml"
CLIENT_PORT = 29092  # the compose file's EXTERNAL listener, inside the container
STARTED = "Kafka Server started"  # what the broker logs once it serves clients
CONTAINER = "SELFHEAL_TEST_KAFKA_CONTAINER"  # set while the session's container serves the e2e tests


def docker_unavailable() -> str | None:
    """Why no Kafka container can start here, or None when a Docker engine answers."""
    try:
        import docker
    except ImportError:
        return "the docker package is missing (pip install testcontainers)"
    try:
        docker.from_env(timeout=5).ping()
    except Exception as exc:  # any failure to reach the engine: no socket, no permission, ...
        return f"no Docker engine answers ({type(exc).__name__}: {str(exc)[:160]})"
    return None


def broker_settings(
    host: str, port: int, extra: Mapping[str, str] | None = None
) -> tuple[str, dict[str, str]]:
    """The compose file's Kafka image and environment, advertised to clients at ``host:port``.

    >>> image, env = broker_settings("localhost", 40000)
    >>> image.startswith("apache/kafka:"), env["KAFKA_PROCESS_ROLES"]
    (True, 'broker,controller')
    >>> env["KAFKA_ADVERTISED_LISTENERS"]
    'INTERNAL://localhost:9092,EXTERNAL://localhost:40000'
    """
    spec = yaml.safe_load(COMPOSE.read_text())["services"]["kafka"]
    env = {k: str(v) for k, v in spec["environment"].items()}
    env["KAFKA_CONTROLLER_QUORUM_VOTERS"] = "1@localhost:9093"  # no compose network: itself
    env["KAFKA_ADVERTISED_LISTENERS"] = f"INTERNAL://localhost:9092,EXTERNAL://{host}:{port}"
    return str(spec["image"]), env | dict(extra or {})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def kafka_container(extra: Mapping[str, str] | None = None, timeout: float = 180.0) -> Iterator[str]:
    """Start the broker; yield its bootstrap address; stop and remove it."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.docker_client import DockerClient
    from testcontainers.core.waiting_utils import wait_for_logs

    host, port = DockerClient().host(), free_port()
    image, env = broker_settings(host, port, extra)
    container = DockerContainer(image).with_bind_ports(CLIENT_PORT, port)
    for key, value in env.items():
        container.with_env(key, value)
    with container:
        wait_for_logs(container, STARTED, timeout=timeout)
        yield f"{host}:{port}"


def fresh_topics() -> None:
    """New topic names for the stacks started from here on (container mode; else nothing)."""
    if not os.environ.get(CONTAINER):
        return
    names = unique_topics()
    for f in fields(Topics):
        os.environ[Topics.env_var(f.name)] = getattr(names, f.name)
