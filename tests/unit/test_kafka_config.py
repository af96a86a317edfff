from __future__ import annotations

import json

import orjson
import pytest

from shared.kafka.clients import lag_from_stats
from shared.kafka.config import KafkaSettings, Topics, consumer_config, producer_config
from shared.wire import decode_label, decode_transactions


def test_settings_from_the_environment_pass_security_through_and_redact_secrets():
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "b1:9093,b2:9093",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "selfheal",
        "KAFKA_SASL_PASSWORD": "hunter2",
        "KAFKA_CONFIG_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM": "https",
    }
    s = KafkaSettings.from_env(env)
    conn = s.connection()
    assert conn["bootstrap.servers"] == "b1:9093,b2:9093"
    assert conn["sasl.password"] == "hunter2" and conn["security.protocol"] == "SASL_SSL"
    assert conn["ssl.endpoint.identification.algorithm"] == "https"
    assert s.redacted()["sasl.password"] == "***" and "hunter2" not in json.dumps(s.redacted())
    # every client gets the connection settings, last, over any default
    assert producer_config(s)["sasl.username"] == "selfheal"
    assert consumer_config(s, "g")["security.protocol"] == "SASL_SSL"
    assert KafkaSettings.from_env({}).bootstrap_servers is None


def test_consumers_are_at_least_once_and_read_from_the_beginning():
    cfg = consumer_config(KafkaSettings("x:1"), "g")
    assert cfg["enable.auto.offset.store"] is False and cfg["auto.offset.reset"] == "earliest"
    assert cfg["session.timeout.ms"] == 6000 and cfg["heartbeat.interval.ms"] == 1000


def test_topic_names_and_configs():
    t = Topics.from_env(
        {"SELFHEAL_TOPIC_DECISIONS": "fraud.decisions", "SELFHEAL_TOPIC_ADAPTER_WEIGHTS": "w"}
    )
    assert t.decisions == "fraud.decisions" and t.weights == "w" and t.transactions == "transactions"
    specs = {s.name: s for s in t.specs()}
    assert specs["w"].config["cleanup.policy"] == "compact"
    assert specs["adapter-registry"].config["cleanup.policy"] == "compact"
    assert specs["transactions"].partitions == 4


def test_topics_round_trip_through_the_environment():
    t = Topics(alerts="fraud.alerts", dlq="fraud.dlq")
    env = t.to_env()
    assert env["SELFHEAL_TOPIC_DRIFT_ALERTS"] == "fraud.alerts" and env["SELFHEAL_TOPIC_DLQ"] == "fraud.dlq"
    assert Topics.from_env(env) == t


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"", "empty message"),
        (b"{", "not JSON"),
        (b"[]", "value is not a JSON object"),
        (b'{"features": {}}', "missing or non-string 'id'"),
        (b'{"id": "a"}', "missing 'features' object"),
        (b'{"id": "a", "features": {"x": 1}}', "missing feature(s): y"),
        (b'{"id": "a", "features": {"x": 1, "y": 2, "z": 3}}', "unknown feature(s): z"),
        (b'{"id": "a", "features": {"x": true, "y": 2}}', "feature 'x' is not a number"),
        (b'{"id": "a", "features": {"x": 1e13, "y": 2}}', "feature 'x' is not finite or absurd"),
        (b'{"id": "a", "features": {"x": 1, "y": 2}, "ts": "now"}', "'ts' is not a number"),
    ],
)
def test_transaction_decoding_rejects_with_a_reason(raw, reason):
    d = decode_transactions([raw], ["x", "y"])
    assert d.ids == [] and d.rejected[0][0] == 0 and d.rejected[0][1].startswith(reason)


def test_transaction_decoding_keeps_order_and_flags_duplicates():
    good = [
        b'{"id": "a", "features": {"x": 1, "y": 2}, "ts": 5}',
        b'{"id": "b", "features": {"y": 4, "x": 3}}',
    ]
    d = decode_transactions([good[0], b"{", good[1], good[0]], ["x", "y"])
    assert d.ids == ["a", "b"] and d.X.tolist() == [[1, 2], [3, 4]] and d.ts == [5, None]
    assert d.index == [0, 2] and d.rejected[1][1] == "duplicate id in batch"
    assert [i for i, _ in d.rejected] == [1, 3]


def test_label_decoding():
    assert decode_label(b'{"id": "a", "label": 1}') == ("a", 1)
    assert decode_label(b'{"id": "a", "label": 2}') == "'label' must be 0 or 1"
    assert decode_label(b'{"id": "a", "label": true}') == "'label' must be 0 or 1"
    assert str(decode_label(b"nope")).startswith("not JSON")


def test_lag_is_summed_from_librdkafka_statistics():
    stats = {
        "topics": {
            "t": {
                "partitions": {
                    "0": {"consumer_lag": 5},
                    "1": {"consumer_lag": 7},
                    "-1": {"consumer_lag": 100},
                    "2": {"consumer_lag": -1},
                }
            }
        }
    }
    assert lag_from_stats(json.dumps(stats)) == 12
    assert lag_from_stats(json.dumps({"topics": {}})) is None
    assert lag_from_stats("not json") is None


def test_decision_decoding():
    from shared.wire import decode_decision

    full = {
        "id": "a",
        "score": 0.9,
        "fraud": True,
        "threshold": 0.1,
        "adapter_version": 3,
        "bundle": "b",
        "rules": [],
        "conflict": False,
        "shadow_score": 0.2,
        "latency_ms": 1.5,
    }
    d = decode_decision(orjson.dumps(full))
    assert not isinstance(d, str) and (d.id, d.fraud, d.adapter_version, d.bundle) == ("a", True, 3, "b")
    assert (
        decode_decision(orjson.dumps({k: v for k, v in full.items() if k != "score"}))
        == "missing field 'score'"
    )
    assert decode_decision(orjson.dumps({**full, "score": "high"})).startswith("bad field")  # type: ignore[union-attr]
    assert decode_decision(b"[1]") == "value is not a JSON object"
