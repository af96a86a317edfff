"""The embedded broker keeps nothing across a restart: the services reconnect, create the
topics again, the healer writes its registry and live adapter again, and scoring goes on."""

from __future__ import annotations

import time

import orjson

from services.healer.service import HealerService, HealerServiceConfig
from services.scorer.service import ScorerConfig, ScorerService
from shared.kafka import EmbeddedBroker, KafkaSettings, Topics, create_topics, read_topic

from .conftest import TEST_SIGNER, wait_until
from .helpers import produce_rows, read_n, value


def test_services_go_on_after_the_embedded_broker_restarts(covariate_bundle, covariate_scenario, run_service):
    b = covariate_bundle
    X, features = covariate_scenario.stream.X, list(b.features)
    with EmbeddedBroker() as broker:
        kafka = KafkaSettings().with_bootstrap(broker.bootstrap)
        topics = Topics()
        create_topics(kafka, topics.specs())
        scorer = ScorerService(b, kafka, topics, ScorerConfig(group="restart-s"), TEST_SIGNER)
        healer = HealerService(b, kafka, topics, HealerServiceConfig(group="restart-h"), TEST_SIGNER)
        running = [run_service(scorer), run_service(healer)]
        before = [f"before-{i}" for i in range(200)]
        produce_rows(kafka, topics.transactions, before, X[:200], features)
        assert {orjson.loads(value(m))["id"] for m in read_n(kafka, topics.decisions, 200)} == set(before)
        snapshots = len(healer.registry)

        broker.stop()  # everything the broker held is gone: topics, records, committed offsets
        time.sleep(1.0)
        broker.start()  # the same port: the clients reconnect by themselves

        wait_until(lambda: scorer._guard.recreated + healer._guard.recreated >= 1, timeout=60)
        wait_until(lambda: len(list(read_topic(kafka, topics.registry))) >= snapshots, timeout=60)
        after = [f"after-{i}" for i in range(200)]
        produce_rows(kafka, topics.transactions, after, X[200:400], features)
        decided = {orjson.loads(value(m))["id"] for m in read_n(kafka, topics.decisions, 200, timeout=90)}
        assert decided == set(after)  # the lost topic's decisions are gone; every new one is there
        assert scorer.core.live.version == healer.healer.version  # the live adapter is back on its topic
        assert len(list(read_topic(kafka, topics.weights))) >= 1
        for r in running:
            r.halt(60)
