"""A bundle with a schema, through a running scorer: nulls and categories are decided,
malformed records are dead-lettered with their reasons."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from services.scorer.service import ScorerConfig, ScorerService
from shared.bundle import Bundle
from shared.data.payments import payments_table
from shared.kafka import TrackedProducer
from shared.schema import Schema
from shared.training import TrainConfig, build_bundle

from .conftest import TEST_SIGNER
from .helpers import key, read_n, reason, value

RULE = '[[rule]]\nname = "ring"\nwhen = \'country == "XX"\'\nlabel = "fraud"\n'


@pytest.fixture(scope="module")
def schema_bundle() -> Bundle:
    cols = payments_table(5000, seed=0)
    y = np.asarray(cols.pop("Class"), np.float32)
    schema = Schema.infer(cols, named={"country": {"XX"}})
    X = schema.encode_columns(cols)
    return build_bundle(X, y, schema.columns, RULE, schema=schema, train_config=TrainConfig(epochs=3))


def test_nulls_and_categories_are_decided_and_malformed_ones_dead_lettered(
    schema_bundle, kafka, topics, group, run_service
):
    run_service(ScorerService(schema_bundle, kafka, topics, ScorerConfig(group=group), TEST_SIGNER))
    cols = payments_table(200, seed=1)
    cols.pop("Class")
    good = [{name: cols[name][i] for name in cols} for i in range(200)]  # 5% nulls
    good[0] = {**good[0], "country": "XX"}  # the rule's category
    good[1] = {**good[1], "country": "ZZ", "amount": None}  # unseen, and a missing amount
    bad = {
        "bad-cat": {**good[2], "country": 33},
        "bad-num": {**good[2], "amount": "12.5"},
        "bad-missing": {k: v for k, v in good[2].items() if k != "hour"},
    }
    producer = TrackedProducer(kafka)
    for i, feats in enumerate(good):
        producer.produce(
            topics.transactions, orjson.dumps({"id": f"ok-{i}", "features": feats}), key=f"ok-{i}"
        )
    for tx_id, feats in bad.items():
        producer.produce(topics.transactions, orjson.dumps({"id": tx_id, "features": feats}), key=tx_id)
    producer.flush()
    decisions = {key(m): orjson.loads(value(m)) for m in read_n(kafka, topics.decisions, len(good))}
    assert set(decisions) == {f"ok-{i}" for i in range(len(good))}
    assert decisions["ok-0"]["rules"] == ["ring"]
    assert all(0.0 <= d["score"] <= 1.0 for d in decisions.values())
    dead = {key(m): reason(m) for m in read_n(kafka, topics.dlq, len(bad))}
    assert "'country' is a category" in dead["bad-cat"]
    assert "'amount' is not a number" in dead["bad-num"]
    assert "missing feature(s): hour" in dead["bad-missing"]
