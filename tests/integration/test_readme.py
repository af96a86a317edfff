"""The README's producer/consumer example runs as written against a running scorer."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from services.scorer.service import ScorerConfig, ScorerService

from .conftest import TEST_SIGNER

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_example_gets_a_decision(covariate_bundle, kafka, topics, group, run_service):
    text = README.read_text()
    block = text[text.index("A producer and a consumer") :]
    code = re.search(r"```python\n(.*?)```", block, re.S)
    assert code is not None
    source = (
        code.group(1)
        .replace("localhost:29092", kafka.bootstrap_servers or "")
        .replace('"transactions"', repr(topics.transactions))
        .replace('["decisions"]', repr([topics.decisions]))
    )
    run_service(ScorerService(covariate_bundle, kafka, topics, ScorerConfig(group=group), TEST_SIGNER))
    result = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("tx-1 True")  # V14 = -2.7: the rule fires and the model agrees
    assert "adapter 0" in result.stdout


def test_the_readme_kafka_python_example_produces_and_reads_as_a_group(
    covariate_bundle, kafka, topics, group, run_service
):
    """A second client library: kafka-python, as README shows it (a group consumer with the
    embedded broker's session timeout, lz4 for the decisions)."""
    pytest.importorskip("kafka")
    pytest.importorskip("lz4")
    text = README.read_text()
    block = text[text.index("`kafka-python` 3.0.12") :]
    code = re.search(r"```python\n(.*?)```", block, re.S)
    assert code is not None
    source = (
        code.group(1)
        .replace("localhost:29092", kafka.bootstrap_servers or "")
        .replace('"transactions"', repr(topics.transactions))
        .replace('"decisions"', repr(topics.decisions))
        .replace('"my-python-app"', repr(group + "-py"))
    )
    run_service(ScorerService(covariate_bundle, kafka, topics, ScorerConfig(group=group), TEST_SIGNER))
    result = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("kp-1 True") and "adapter 0" in result.stdout
