"""Services as processes on the embedded broker, killed with SIGKILL or stopped with SIGTERM
mid-stream: nothing is lost, duplicates are bounded, every restart resumes where it should."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from services.processes import Child, assigned
from shared.data import build
from shared.kafka import EmbeddedBroker, KafkaSettings, Topics, TrackedProducer, create_topics
from shared.kafka.clients import beginnings, read_topic
from shared.kafka.config import consumer_config
from shared.kafka.registry_store import KafkaSnapshotStore
from shared.loadgen import produce_stream
from shared.messages import Alert, Transaction, encode_alert, encode_transaction
from shared.signing import KEY_ENV, Signer

KEY = "crash-tests-adapter-key-0123456789abcdef0123"


@pytest.fixture(scope="module")
def kafka() -> Iterator[KafkaSettings]:
    with EmbeddedBroker() as broker:
        yield KafkaSettings().with_bootstrap(broker.bootstrap)


@dataclass
class Setup:
    kafka: KafkaSettings
    topics: Topics
    bundle: Path
    logs: Path
    tag: str
    children: list[Child]

    def child(self, kind: str, name: str) -> Child:
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers or "",
            KEY_ENV: KEY,
            "SELFHEAL_HEALER_NICE": "0",
            **self.topics.to_env(),
        }
        child = Child.service(kind, self.bundle, env, self.logs, name, "--group", f"{kind}-{self.tag}")
        self.children.append(child)
        return child

    def committed(self, kind: str, topic: str) -> int:
        """Offsets committed by ``kind``'s group on ``topic``, summed over partitions."""
        c = Consumer(consumer_config(self.kafka, f"{kind}-{self.tag}"))
        try:
            parts = c.committed([TopicPartition(topic, p) for p in range(4)], timeout=10)
            return sum(max(tp.offset, 0) for tp in parts)
        finally:
            c.close()


@pytest.fixture
def setup(kafka: KafkaSettings, covariate_bundle: Any, tmp_path: Path) -> Iterator[Setup]:
    tag = uuid.uuid4().hex[:8]
    topics = Topics(**{name: f"{value}-{tag}" for name, value in Topics().__dict__.items()})
    create_topics(kafka, topics.specs())
    (tmp_path / "logs").mkdir()
    s = Setup(kafka, topics, covariate_bundle.save(tmp_path / "bundle"), tmp_path / "logs", tag, [])
    yield s
    for child in s.children:  # whatever a failed test left running
        if child.proc.poll() is None:
            child.proc.kill()
            child.proc.wait()


def wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s"
        time.sleep(0.1)


def produce(s: Setup, ids: list[str], rate: float) -> None:
    X = build("control", n_pre=0, n_post=len(ids)).stream.X
    features = build("control", n_pre=0, n_post=1).features
    p = TrackedProducer(s.kafka)
    start = time.monotonic()
    for i, tx in enumerate(ids):
        p.produce(
            s.topics.transactions,
            encode_transaction(Transaction.from_row(tx, features, X[i].tolist(), time.time() * 1e3)),
            key=tx,
        )
        if i % 50 == 0:
            p.poll(0)
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
    p.flush()


def read_all(s: Setup, topic: str, want: set[str] | None, timeout: float = 90) -> list[dict[str, Any]]:
    """Every record of ``topic`` (as JSON), reading until the ids in ``want`` are all there and
    then 2 s more for stragglers."""
    c = Consumer(consumer_config(s.kafka, None))
    c.assign(beginnings(c, topic))
    out: list[dict[str, Any]] = []
    deadline, quiet = time.monotonic() + timeout, None
    try:
        while time.monotonic() < deadline:
            msgs = [m for m in c.consume(1000, 0.2) if m.error() is None]
            out += [orjson.loads(m.value() or b"") for m in msgs]
            if want is not None and want <= {d["id"] for d in out}:
                quiet = quiet or time.monotonic() + 2.0
                if time.monotonic() > quiet:
                    break
        return out
    finally:
        c.close()


def test_kill_9_one_of_two_scorers_loses_no_transaction(setup: Setup) -> None:
    a, b = setup.child("scorer", "scorer-a"), setup.child("scorer", "scorer-b")
    for c in (a, b):
        c.wait(assigned, "partitions")
    ids = [f"k-{i}" for i in range(8000)]
    feeder = threading.Thread(target=produce, args=(setup, ids, 1000.0))
    feeder.start()
    a.wait(lambda h: int(h.get("batches", 0)) >= 20, "batches")
    a.proc.send_signal(signal.SIGKILL)
    feeder.join()
    decisions = read_all(setup, setup.topics.decisions, set(ids))
    counts = Counter(d["id"] for d in decisions)
    assert set(counts) == set(ids)  # every transaction decided, after the rebalance
    duplicates = sum(n - 1 for n in counts.values())
    assert duplicates <= 3000, duplicates  # at most ~2 s of the dead scorer's input, redone
    assert b.stop() == 0


def test_sigterm_finishes_the_batch_commits_and_a_successor_redoes_nothing(setup: Setup) -> None:
    first = setup.child("scorer", "scorer-1")
    first.wait(assigned, "partitions")
    ids = [f"t-{i}" for i in range(6000)]
    feeder = threading.Thread(target=produce, args=(setup, ids, 2000.0))
    feeder.start()
    first.wait(lambda h: int(h.get("batches", 0)) >= 10, "batches")
    assert first.stop() == 0  # SIGTERM mid-stream: exit 0
    decided_by_first = len(read_all(setup, setup.topics.decisions, None, timeout=3))
    assert (
        setup.committed("scorer", setup.topics.transactions) == decided_by_first
    )  # all handled, all committed
    feeder.join()
    second = setup.child("scorer", "scorer-2")
    decisions = read_all(setup, setup.topics.decisions, set(ids))
    assert sorted(d["id"] for d in decisions) == sorted(ids)  # each exactly once
    assert second.stop() == 0
    for kind in ("monitor", "healer"):  # the others exit 0 on SIGTERM too
        c = setup.child(kind, kind)
        c.wait(assigned, "partitions")
        assert c.stop() == 0


def test_kill_9_the_monitor_resumes_from_committed_offsets(setup: Setup) -> None:
    monitor = setup.child("monitor", "monitor-1")
    monitor.wait(assigned, "partitions")
    ids = [f"m-{i}" for i in range(6000)]
    feeder = threading.Thread(target=produce, args=(setup, ids, 2000.0))
    feeder.start()
    monitor.wait(lambda h: int(h.get("rows", 0)) >= 2000, "rows")
    monitor.proc.send_signal(signal.SIGKILL)
    monitor.proc.wait()
    feeder.join()
    committed = setup.committed("monitor", setup.topics.transactions)
    assert 0 < committed < len(ids)
    again = setup.child("monitor", "monitor-2")
    again.wait(lambda h: int(h.get("rows", 0)) >= len(ids) - committed, "rows", timeout=90)
    time.sleep(2.0)
    health = again.health()
    assert health is not None and health["rows"] == len(ids) - committed  # from the committed offsets on
    assert again.stop() == 0


def test_kill_9_the_healer_during_a_heal_rebuilds_a_consistent_registry(
    setup: Setup, covariate_bundle: Any
) -> None:
    b = covariate_bundle
    scorer, healer = setup.child("scorer", "scorer"), setup.child("healer", "healer-1")
    for c in (scorer, healer):
        c.wait(assigned, "partitions")
    p = TrackedProducer(setup.kafka)
    drift = encode_alert(Alert("fidi", "fidi", 2.0, 1.0, "drift", onset_rows=1))
    p.produce(setup.topics.alerts, drift, key="fidi")
    p.flush()
    stream = build("covariate", n_pre=0, n_post=60000).stream
    done = threading.Event()
    feeder = threading.Thread(
        target=produce_stream,
        args=(setup.kafka, setup.topics, stream, list(b.features)),
        kwargs={"rate": 1000, "label_delay": 200, "stop": done.is_set},
    )
    feeder.start()
    healer.wait(lambda h: bool(h.get("healing")) and int(h.get("snapshots", 0)) >= 3, "heal in progress")
    batches = scorer.health()["batches"]  # type: ignore[index]
    healer.proc.send_signal(signal.SIGKILL)
    healer.proc.wait()
    time.sleep(2.0)
    assert scorer.health()["batches"] > batches  # type: ignore[index]  # scoring never stopped
    store = KafkaSnapshotStore(setup.kafka, setup.topics.registry, b.config, p, Signer(KEY.encode()))
    snaps = store.load_all()
    records = list(read_topic(setup.kafka, setup.topics.registry, settle=1.0))
    assert store.rejected == [] and len(records) == len(snaps)  # every record signed, ids unique
    assert [s.seq for s in snaps] == list(range(len(snaps)))
    posts = {s.heal for s in snaps if s.kind == "post"}
    pres = {s.heal for s in snaps if s.kind == "pre"}
    assert posts <= pres and len(pres - posts) <= 1  # at most the interrupted heal's "pre"
    again = setup.child("healer", "healer-2")
    again.wait(assigned, "partitions")
    h = again.health()
    assert h is not None and h["snapshots"] == len(snaps)
    live = [
        s for s in snaps if s.kind in ("initial", "rollback", "manual") or (s.kind == "post" and s.accepted)
    ]
    assert h["adapter_version"] == live[-1].version  # it resumes from the last live adapter
    again.wait(lambda h: int(h.get("snapshots", 0)) > len(snaps), "a heal after the restart")
    done.set()
    feeder.join()
    assert again.stop() == 0 and scorer.stop() == 0
    after = store.load_all()
    assert [s.seq for s in after] == list(range(len(after)))  # continued, never overwritten
