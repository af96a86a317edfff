"""The client examples of docs/messages.md run as written against a running scorer: confluent-kafka's
producer and consumer, and kafka-python's (a second client library)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from services.scorer.service import ScorerConfig, ScorerService

from .conftest import TEST_SIGNER

MESSAGES = Path(__file__).resolve().parents[2] / "docs" / "messages.md"


def run_readme_block(after: str, replace: dict[str, str], scorer: ScorerService, run_service) -> str:
    """The first python block after ``after`` in docs/messages.md, with ``replace`` applied, run in a
    fresh interpreter while ``scorer`` runs; its output."""
    text = MESSAGES.read_text()
    code = re.search(r"```python\n(.*?)```", text[text.index(after) :], re.S)
    assert code is not None
    source = code.group(1)
    for old, new in replace.items():
        source = source.replace(old, new)
    run_service(scorer)
    result = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_confluent_kafka_example_gets_a_decision(covariate_bundle, kafka, topics, group, run_service):
    scorer = ScorerService(covariate_bundle, kafka, topics, ScorerConfig(group=group), TEST_SIGNER)
    out = run_readme_block(
        "A producer and a consumer",
        {
            "localhost:29092": kafka.bootstrap_servers or "",
            '"transactions"': repr(topics.transactions),
            '["decisions"]': repr([topics.decisions]),
        },
        scorer,
        run_service,
    )
    assert out.startswith("tx-1 True")  # V14 = -2.7: the rule fires and the model agrees
    assert "adapter 0" in out


def test_the_kafka_python_example_produces_and_reads_as_a_group(
    covariate_bundle, kafka, topics, group, run_service
):
    """kafka-python as docs/messages.md shows it: a group consumer with the embedded broker's session
    timeout, lz4 for the decisions."""
    pytest.importorskip("kafka")
    pytest.importorskip("lz4")
    scorer = ScorerService(covariate_bundle, kafka, topics, ScorerConfig(group=group), TEST_SIGNER)
    out = run_readme_block(
        "`kafka-python` 3.0.12",
        {
            "localhost:29092": kafka.bootstrap_servers or "",
            '"transactions"': repr(topics.transactions),
            '"decisions"': repr(topics.decisions),
            '"my-python-app"': repr(group + "-py"),
        },
        scorer,
        run_service,
    )
    assert out.startswith("kp-1 True") and "adapter 0" in out
