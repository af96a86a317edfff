"""Shared fixtures: scenarios and bundles are built once per session (training takes seconds)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from shared.bundle import Bundle
from shared.data import Scenario, build
from shared.training import build_bundle


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
    if missing:
        tools = ", ".join(f"{t} ({n} test{'s' * (n > 1)})" for t, n in sorted(missing.items()))
        packages = " ".join(sorted({TOOL_PACKAGES.get(t, t) for t in missing}))
        terminalreporter.write_sep("-", "skipped for a missing tool")
        terminalreporter.write_line(f"{tools}; install with: sudo apt-get install -y {packages}")
