"""One healing path: a drift scenario replayed through the services' own handlers gives the
offline runner's episodes, gate verdicts, adapter versions and costs.

The offline runner (``selfheal experiment``) scores, monitors and heals with the services'
cores in one process. Here the same stream goes through ``ScorerService``,
``MonitorService`` and ``HealerService`` themselves, on the embedded broker, in lockstep:
per batch of 100 the scorer handles the transactions (its decisions are read back from
the topic), the monitor handles transactions and decisions, and the healer handles
transactions, decisions, the monitor's alerts and the labels due, then ticks (heals run
inline, so a heal finishes in the batch that started it, as offline). An adapter the healer
publishes reaches the scorer through ``adapter-weights`` and its follower thread, and is
swapped in before the next batch.
"""

from __future__ import annotations

import time

import numpy as np
from confluent_kafka import Consumer, Message

from services.healer.service import HealerService, HealerServiceConfig
from services.monitor.service import MonitorConfig, MonitorService
from services.scorer.service import ScorerConfig, ScorerService
from shared.data import build
from shared.evaluation import metrics_from_predictions
from shared.experiment import ExperimentConfig, run
from shared.healing.worker import InlineExecutor
from shared.kafka.clients import beginnings
from shared.kafka.config import KafkaSettings, Topics, consumer_config
from shared.messages import (
    Decision,
    Label,
    Transaction,
    decode_decision,
    encode_alert,
    encode_label,
    encode_transaction,
)

from .conftest import TEST_SIGNER, wait_until

N_PRE, N_POST, BATCH = 1000, 3000, 100


def message(topic: str, key: str, value: bytes, offset: int) -> Message:
    return Message(topic=topic, partition=0, offset=offset, key=key.encode(), value=value, timestamp=(1, 0))


class Replay:
    """The three services, fed one batch at a time."""

    def __init__(self, bundle, kafka: KafkaSettings, topics: Topics, group: str) -> None:
        self.topics = topics
        self.scorer = ScorerService(bundle, kafka, topics, ScorerConfig(group=f"{group}-s"), TEST_SIGNER)
        self.monitor = MonitorService(bundle, kafka, topics, MonitorConfig(group=f"{group}-m"))
        cfg = HealerServiceConfig(group=f"{group}-h")
        self.healer = HealerService(bundle, kafka, topics, cfg, TEST_SIGNER, executor=InlineExecutor())
        self.scorer.on_start()  # the adapter follower
        self.reader = Consumer(consumer_config(kafka, None, **{"fetch.wait.max.ms": 5}))
        self.reader.assign(beginnings(self.reader, topics.decisions))
        self.offset = 0
        self.alerts_seen = 0

    def close(self) -> None:
        self.scorer.on_stop()
        self.reader.close()

    def decisions(self, n: int) -> list[Message]:
        """The next ``n`` decisions the scorer produced, in input order."""
        self.scorer.producer.flush()
        got: list[Message] = []
        deadline = time.monotonic() + 30
        while len(got) < n and time.monotonic() < deadline:
            got += [m for m in self.reader.consume(n - len(got), 0.05) if m.error() is None]
        assert len(got) == n, f"{len(got)} of {n} decisions came back"
        return got

    def batch(self, tx: list[Message], labels: list[Message]) -> dict[str, Decision]:
        self.scorer.tick()  # the newest adapter the follower received
        self.scorer.handle(tx)
        dec = self.decisions(len(tx))
        self.monitor.handle(tx + dec)
        new = self.monitor.published[self.alerts_seen :]
        self.alerts_seen = len(self.monitor.published)
        alerts = [
            message(self.topics.alerts, a.key, encode_alert(a), self.offset + k) for k, a in enumerate(new)
        ]
        self.offset += len(alerts)
        self.healer.handle(tx + dec + alerts + labels)
        self.healer.tick()
        live = self.healer.healer.version

        def swapped() -> bool:
            self.scorer.tick()
            return self.scorer.core.live.version == live

        wait_until(swapped, timeout=30)  # the published adapter reached the scorer
        decoded = [decode_decision(m.value()) for m in dec]
        return {d.id: d for d in decoded if isinstance(d, Decision)}  # by id: partitions reorder them


def test_the_stream_heals_as_the_offline_runner_does(kafka, topics, group):
    cfg = ExperimentConfig(scenario="covariate", n_pre=N_PRE, n_post=N_POST, after_rows=500)
    assert cfg.stream_post == N_POST  # the stream the replay builds
    result = run(cfg)
    offline = result.events
    s = build("covariate", seed=42, n_pre=N_PRE, n_post=N_POST).stream
    features = list(result.bundle.features)
    replay = Replay(result.bundle, kafka, topics, group)
    episodes: list[tuple[int, float]] = []
    verdicts: list[tuple[int, bool]] = []
    versions: list[int] = []
    costs: list[float] = []
    labelled = 0
    try:
        for b, start in enumerate(range(0, len(s), BATCH), start=1):
            end = min(start + BATCH, len(s))
            ids = [str(i) for i in s.ids[start:end]]
            tx = [
                message(
                    topics.transactions,
                    ids[k],
                    encode_transaction(
                        Transaction.from_row(ids[k], features, s.X[start + k].tolist(), float(start + k))
                    ),
                    start + k,
                )
                for k in range(end - start)
            ]
            due = max(labelled, end - 500)
            labels = [
                message(topics.labels, str(s.ids[i]), encode_label(Label(str(s.ids[i]), int(s.y[i]))), i)
                for i in range(labelled, due)
            ]
            labelled = due
            posts_before = replay.healer.registry.n_heals
            was_open = replay.healer.healer.episode is not None
            decided = replay.batch(tx, labels)
            ep = replay.healer.healer.episode
            if ep is not None and not was_open:
                episodes.append((b, ep.start))
            posts = [x for x in replay.healer.registry.snapshots() if x.kind == "post"]
            verdicts += [(b, x.accepted) for x in posts[posts_before:]]
            versions.append(replay.healer.healer.version)
            y = s.y[start:end]
            fraud = np.array([decided[i].fraud for i in ids])
            costs.append(metrics_from_predictions(y, fraud, result.bundle.costs).cost)
    finally:
        replay.close()
    assert episodes == [(e["batch"], e["onset_row"]) for e in offline if e["type"] == "episode"]
    assert len(episodes) == 1
    assert verdicts == [(e["batch"], e["accepted"]) for e in offline if e["type"] == "heal"]
    assert sum(ok for _, ok in verdicts) >= 1  # it healed, and the stream took the same heals
    assert versions == [r["adapter_version"] for r in result.batches]
    assert costs == [r["healed_cost"] for r in result.batches]
