"""Shared fixtures: scenarios and bundles are built once per session (training takes seconds)."""

from __future__ import annotations

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
