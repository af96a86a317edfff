"""The operator commands against a running scorer on the embedded broker."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import orjson
import pytest

from services.cli import main
from services.scorer.service import ScorerConfig, ScorerService

from .conftest import TEST_SIGNER
from .helpers import produce_rows


def use_topics(monkeypatch, kafka, topics):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap_servers or "")
    for field, env in (
        ("transactions", "TRANSACTIONS"),
        ("decisions", "DECISIONS"),
        ("labels", "LABELS"),
        ("alerts", "DRIFT_ALERTS"),
        ("weights", "ADAPTER_WEIGHTS"),
        ("registry", "ADAPTER_REGISTRY"),
        ("dlq", "DLQ"),
    ):
        monkeypatch.setenv(f"SELFHEAL_TOPIC_{env}", getattr(topics, field))


def test_watch_decisions_prints_readable_lines_and_stops_at_max(
    seed_bundle, seed_scenario, kafka, topics, group, run_service, monkeypatch, capsys
):
    use_topics(monkeypatch, kafka, topics)
    run_service(ScorerService(seed_bundle, kafka, topics, ScorerConfig(group=group), TEST_SIGNER))
    ids = [f"w-{i}" for i in range(10)]
    produce_rows(kafka, topics.transactions, ids, seed_scenario.stream.X[:10], list(seed_bundle.features))
    assert main(["watch", "decisions", "--max", "3", "--timeout", "60"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert all(line.split()[0] in ("ok", "FRAUD") and " v0" in line for line in lines)


def test_produce_sends_a_scenario_with_its_labels(kafka, topics, monkeypatch, capsys):
    use_topics(monkeypatch, kafka, topics)
    args = ["produce", "--scenario", "control", "--n-pre", "100", "--n-post", "200", "--rate", "0", "--quiet"]
    assert main(args) == 0
    assert "produced 300 transactions" in capsys.readouterr().out


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed")
def test_kcat_produces_transactions_and_reads_their_decisions(
    seed_bundle, seed_scenario, kafka, topics, group, run_service, monkeypatch
):
    """The kcat lines of docs/messages.md, as a user types them: Debian's kcat (librdkafka 2.0.2 alone cannot
    talk to the embedded broker) produces a transaction and reads its lz4-compressed decision."""
    use_topics(monkeypatch, kafka, topics)
    run_service(ScorerService(seed_bundle, kafka, topics, ScorerConfig(group=group), TEST_SIGNER))
    features = dict(zip(seed_bundle.features, map(float, seed_scenario.stream.X[0]), strict=True))
    line = b"kc-1|" + orjson.dumps({"id": "kc-1", "features": features}) + b"\n"
    selfheal = [sys.executable, "-m", "services.cli", "kcat"]
    sent = subprocess.run([*selfheal, "-P", "-t", topics.transactions, "-K", "|"], input=line, timeout=60)
    assert sent.returncode == 0
    read = [*selfheal, "-C", "-t", topics.decisions, "-o", "beginning", "-e", "-q", "-f", "%k %s\\n"]
    deadline = time.monotonic() + 60
    out = b""
    while b"kc-1 " not in out and time.monotonic() < deadline:
        out = subprocess.run(read, capture_output=True, timeout=60).stdout
    key, _, payload = out.decode().strip().partition(" ")
    assert key == "kc-1"
    assert orjson.loads(payload)["adapter_version"] == 0
