"""Shared fixtures: scenarios and bundles are built once per session (training takes seconds)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest

from shared.bundle import Bundle
from shared.data import Scenario, build
from shared.training import build_bundle
from tests.kafka_container import docker_unavailable, kafka_container


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--kafka",
        choices=("embedded", "container"),
        default=os.environ.get("SELFHEAL_TEST_KAFKA", "embedded"),
        help="the broker of the integration and e2e tests: the embedded one (default), or an Apache "
        "Kafka container (needs a Docker engine; also SELFHEAL_TEST_KAFKA=container)",
    )


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """With ``--kafka container``: one Apache Kafka container for the session, named in
    ``KAFKA_BOOTSTRAP_SERVERS`` so that every client and child process uses it; None: each
    test starts the embedded broker as it always does."""
    if request.config.getoption("--kafka") != "container":
        yield None
        return
    if why := docker_unavailable():
        pytest.skip(f"--kafka container: {why}")
    with kafka_container() as bootstrap:
        before = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
        try:
            yield bootstrap
        finally:
            if before is None:
                os.environ.pop("KAFKA_BOOTSTRAP_SERVERS", None)
            else:
                os.environ["KAFKA_BOOTSTRAP_SERVERS"] = before


@pytest.fixture(scope="session")
def seed_scenario() -> Scenario:
    return build("seed")


@pytest.fixture(scope="session")
def covariate_scenario() -> Scenario:
    return build("covariate")


@pytest.fixture(scope="session")
def seed_bundle(seed_scenario: Scenario) -> Bundle:
    s = seed_scenario
    return build_bundle(s.train.X, s.train.y, s.features, s.rules_toml, label="Class")


@pytest.fixture(scope="session")
def covariate_bundle(covariate_scenario: Scenario) -> Bundle:
    s = covariate_scenario
    return build_bundle(s.train.X, s.train.y, s.features, s.rules_toml, label="Class")


# The tools some tests drive, and the Debian package that brings each (kubectl: Kubernetes'
# own apt repository; the machines here have the other four).
TOOL_PACKAGES = {
    "kcat": "kcat",
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "docker-compose": "docker-compose",
    "kubectl": "kubectl",
}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Name the tests skipped for a missing tool, and the one command that installs them."""
    missing: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if m := re.search(r"(\S+) is not installed", reason):
            missing[m.group(1)] = missing.get(m.group(1), 0) + 1
    docker = sum(1 for r in terminalreporter.stats.get("skipped", []) if "Docker engine" in str(r.longrepr))
    if docker:
        terminalreporter.write_sep("-", "skipped without a Docker engine")
        terminalreporter.write_line(
            f"{docker} test{'s' * (docker > 1)} of a real Apache Kafka (testcontainers): they run where a "
            "Docker engine answers; `make test-kafka` then runs the integration and e2e suites on a "
            "Kafka container"
        )
    if missing:
        tools = ", ".join(f"{t} ({n} test{'s' * (n > 1)})" for t, n in sorted(missing.items()))
        packages = " ".join(sorted({TOOL_PACKAGES.get(t, t) for t in missing}))
        terminalreporter.write_sep("-", "skipped for a missing tool")
        terminalreporter.write_line(f"{tools}; install with: sudo apt-get install -y {packages}")
