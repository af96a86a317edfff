from __future__ import annotations

import threading
import time
import urllib.request

import numpy as np
import orjson
import torch

from services.scorer.service import ScorerConfig, ScorerService
from shared.kafka import TrackedProducer
from shared.kafka.registry_store import produce_adapter
from shared.messages import Transaction, encode_transaction
from shared.messages.adapters import encode_adapter
from shared.registry import Snapshot
from shared.signing import ADAPTER, SNAPSHOT, Signer

from .conftest import TEST_SIGNER, wait_until
from .helpers import headers, key, produce_rows, read_n, reason, value


def scorer(bundle, kafka, topics, group, **kw):
    return ScorerService(bundle, kafka, topics, ScorerConfig(group=group, **kw), TEST_SIGNER)


def test_decisions_for_every_transaction(seed_bundle, seed_scenario, kafka, topics, group, run_service):
    running = run_service(scorer(seed_bundle, kafka, topics, group))
    st = seed_scenario.stream
    ids, X = [f"tx-{i}" for i in range(300)], st.X[:300]
    produce_rows(kafka, topics.transactions, ids, X, list(seed_bundle.features))
    msgs = read_n(kafka, topics.decisions, 300)
    decisions = {key(m): orjson.loads(value(m)) for m in msgs}
    assert set(decisions) == set(ids)
    d = decisions["tx-7"]
    assert d["bundle"] == seed_bundle.id and d["adapter_version"] == 0
    assert d["score"] == d["shadow_score"]
    expected = float(seed_bundle.new_model().predict_proba(X[7:8])[0])
    assert abs(d["score"] - expected) < 1e-5
    assert d["fraud"] == (d["score"] >= seed_bundle.threshold)
    assert d["rules"] == (["low_v14"] if X[7, 7] < -1.5 else [])
    assert {"threshold", "conflict", "latency_ms"} <= d.keys()
    running.halt()


def test_a_published_adapter_reaches_the_running_scorer_without_a_gap(
    seed_bundle, seed_scenario, kafka, topics, group, run_service
):
    service = scorer(seed_bundle, kafka, topics, group, batch_size=50)
    run_service(service)
    wait_until(lambda: service.follower.caught_up.is_set())
    st = seed_scenario.stream
    features = list(seed_bundle.features)
    sent: list[str] = []
    done = threading.Event()

    def feed() -> None:  # a steady stream until told to stop
        k = 0
        while not done.is_set():
            ids = [f"tx-{k + i}" for i in range(25)]
            produce_rows(kafka, topics.transactions, ids, st.X[k % 9000 : k % 9000 + 25], features)
            sent.extend(ids)
            k += 25
            time.sleep(0.01)

    feeder = threading.Thread(target=feed)
    feeder.start()
    wait_until(lambda: service.batches >= 5)
    new = {k: v.clone() for k, v in seed_bundle.adapter_state.items()}
    new["scale"] = torch.tensor(0.5)
    producer = TrackedProducer(kafka)
    published = time.monotonic()
    produce_adapter(producer, topics.weights, TEST_SIGNER, new, seed_bundle.id, 1, 0)
    producer.flush()
    wait_until(lambda: service.core.live.version == 1, timeout=20)
    assert time.monotonic() - published < 5.0
    time.sleep(0.5)
    done.set()
    feeder.join()
    msgs = read_n(kafka, topics.decisions, len(sent))
    decisions = [orjson.loads(value(m)) for m in msgs]
    assert {d["id"] for d in decisions} == set(sent)
    versions = [d["adapter_version"] for d in decisions]
    assert versions.count(1) > 0 and versions.count(0) > 0
    model = seed_bundle.new_model(new)
    d = next(d for d in decisions if d["adapter_version"] == 1)
    k = int(d["id"].split("-")[1]) % 9000
    assert abs(d["score"] - float(model.predict_proba(st.X[k : k + 1])[0])) < 1e-5
    assert abs(d["shadow_score"] - float(seed_bundle.new_model().predict_proba(st.X[k : k + 1])[0])) < 1e-5
    # no gap: decisions kept flowing while the adapter was swapped in
    stamps = np.sort([m.timestamp()[1] for m in msgs])
    assert np.diff(stamps).max() < 1000  # ms


def bad_inputs(features: list[str], bundle: str) -> list[tuple[bytes, bytes]]:
    """(key, value) of every kind of unusable transaction."""
    zeros = dict.fromkeys(features, 0.0)

    def tx(tx_id: str, **fields: object) -> bytes:
        return orjson.dumps({"id": tx_id, "features": zeros, **fields})

    return [
        (b"b-json", b"{not json"),
        (b"b-array", b"[1, 2]"),
        (b"b-string", b'"a string"'),
        (b"b-missing", orjson.dumps({"id": "m", "features": {"V1": 0.0}})),
        (b"b-extra", orjson.dumps({"id": "x", "features": {**zeros, "extra": 1}})),
        (b"b-type", orjson.dumps({"id": "s", "features": {**zeros, "V14": "low"}})),
        (b"b-null", orjson.dumps({"id": "n", "features": {**zeros, "V2": None}})),
        (b"b-absurd", orjson.dumps({"id": "a", "features": {**zeros, "V14": 1e300}})),
        (b"b-nan", tx("nan").replace(b'"V3":0.0', b'"V3":NaN')),
        (b"b-noid", orjson.dumps({"features": zeros})),
        (b"b-empty", b""),
        (b"b-huge", tx("huge", pad="x" * 100_000)),
        (b"\xff\xfe-key", tx("badkey")),
        (b"b-bundle", tx("other", bundle="another-bundle")),
        (b"dup", tx("dup-1")),
        (b"dup", tx("dup-1")),  # the same transaction again
    ]


def test_every_input_offset_ends_as_a_decision_or_a_dead_letter(
    seed_bundle, seed_scenario, kafka, topics, group, run_service
):
    """Good and bad records interleaved: each bad one reaches the DLQ as it came, with a
    reason and its source offset; each good one gets a decision; nothing twice, nothing lost."""
    import random

    service = scorer(seed_bundle, kafka, topics, group, metrics_port=0)
    run_service(service)
    features = list(seed_bundle.features)
    bad = bad_inputs(features, seed_bundle.id)
    good = [
        (
            f"ok-{i}".encode(),
            encode_transaction(Transaction.from_row(f"ok-{i}", features, row.tolist(), None)),
        )
        for i, row in enumerate(seed_scenario.stream.X[:300])
    ]
    records = good + bad * 3  # bad ones again later: a duplicate id stays a duplicate
    random.Random(7).shuffle(records)
    producer = TrackedProducer(kafka)
    for k, v in records:
        producer.produce(topics.transactions, v, key=k)
    producer.flush()
    sent = read_n(kafka, topics.transactions, len(records))
    decisions = read_n(kafka, topics.decisions, len(good) + 1)  # + the first dup-1
    dlq = read_n(kafka, topics.dlq, len(records) - len(good) - 1)
    by_offset = {(m.partition(), m.offset()): m for m in sent}
    dead = {}
    for m in dlq:
        h = headers(m)
        assert h["topic"] == topics.transactions and h["service"] == "scorer"
        src = by_offset[(int(h["partition"]), int(h["offset"]))]
        assert (value(m), m.key()) == (value(src), src.key())  # the original bytes and key
        dead[(src.partition(), src.offset())] = reason(m)
    decided = [key(m) for m in decisions]
    assert len(decided) == len(set(decided))  # nothing decided twice
    for (part, off), m in by_offset.items():  # every offset: a decision or a dead letter
        if (part, off) not in dead:
            assert orjson.loads(value(m))["id"] in decided
    assert len(dead) + len(decided) == len(records)
    kinds = [r.split(":")[0].split(" ")[0] for r in dead.values()]
    for word in ("not", "value", "missing", "unknown", "feature", "empty", "record", "key", "duplicate"):
        assert word in kinds, word
    assert any(r.startswith("unknown bundle 'another-bundle'") for r in dead.values())
    assert service.server is not None
    with urllib.request.urlopen(f"http://127.0.0.1:{service.server.port}/metrics") as r:
        text = r.read().decode()
    assert f"selfheal_scorer_transactions_total {float(len(records))}" in text
    assert f"selfheal_scorer_decisions_total {float(len(decided))}" in text
    flagged = sum(orjson.loads(value(m))["fraud"] for m in decisions)
    assert f"selfheal_scorer_alerts_total {float(flagged)}" in text  # the investigators' queue
    dlq_total = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("selfheal_scorer_dlq_total")
    )
    assert dlq_total == len(dead)
    batches = [
        line
        for line in text.splitlines()
        if line.startswith("selfheal_scorer_decision_latency_seconds_count")
    ]
    assert batches and float(batches[0].rsplit(" ", 1)[1]) >= 1  # one observation per batch with decisions


def test_only_signed_sound_adapters_for_this_bundle_are_taken(
    seed_bundle, seed_scenario, kafka, topics, group, run_service
):
    """Unsigned, forged, corrupt, wrong-shape, wrong-bundle, non-finite and replayed payloads
    are refused: the scorer keeps its adapter, counts, logs and raises an alert for each."""
    from safetensors.torch import save

    service = scorer(seed_bundle, kafka, topics, group, metrics_port=0)
    run_service(service)
    b = seed_bundle.id
    good = {k: v.clone() for k, v in seed_bundle.adapter_state.items()}
    good["scale"] = torch.tensor(0.3)
    valid = encode_adapter(good, b, 7, 0)
    nan = {k: v.clone() for k, v in good.items()}
    nan["scale"] = torch.tensor(float("nan"))
    snapshot_record = Snapshot(1, "post", 8, 0, b, good)
    cases = {
        "unsigned": (valid, []),
        "forged": (valid, Signer(b"not-the-key-" * 4).headers(ADAPTER, b, valid)),
        "corrupt": (valid[:-1] + b"\x00", TEST_SIGNER.headers(ADAPTER, b, valid)),
        "garbage": (b"garbage", TEST_SIGNER.headers(ADAPTER, b, b"garbage")),
        "shape": (
            shape := encode_adapter({k: torch.zeros(3) for k in good}, b, 9, 0),
            TEST_SIGNER.headers(ADAPTER, b, shape),
        ),
        "bundle": (
            other := encode_adapter(good, "another-bundle", 10, 0),
            TEST_SIGNER.headers(ADAPTER, b, other),
        ),
        "nan": (
            nan_bytes := save(nan, metadata={"bundle": b, "version": "11", "parent": "", "metrics": "{}"}),
            TEST_SIGNER.headers(ADAPTER, b, nan_bytes),
        ),
        "replayed snapshot": (
            snap_bytes := snapshot_record.to_bytes(),
            TEST_SIGNER.headers(SNAPSHOT, b, snap_bytes),  # signed for adapter-registry
        ),
    }
    producer = TrackedProducer(kafka)
    for data, hdrs in cases.values():
        producer.produce(topics.weights, data, key=b, headers=hdrs)
    producer.flush()
    wait_until(lambda: service.follower.rejected == len(cases))
    assert service.follower.accepted == 0
    produce_rows(kafka, topics.transactions, ["t1"], seed_scenario.stream.X[:1], list(seed_bundle.features))
    (msg,) = read_n(kafka, topics.decisions, 1)
    assert orjson.loads(value(msg))["adapter_version"] == 0  # still the adapter it had
    alerts = [orjson.loads(value(m)) for m in read_n(kafka, topics.alerts, len(cases))]
    assert [a["state"] for a in alerts] == ["rejected"] * len(cases)
    assert {a["feature"] for a in alerts} == {"adapter-weights"}
    reasons = [a["reason"] for a in alerts]
    assert reasons[0].startswith("unsigned")
    assert all("signature does not match" in r for r in (reasons[1], reasons[2], reasons[7]))
    assert "not valid safetensors" in reasons[3]
    assert "shape" in reasons[4] and "another-bundle" in reasons[5] and "NaN" in reasons[6]
    assert service.server is not None
    with urllib.request.urlopen(f"http://127.0.0.1:{service.server.port}/metrics") as r:
        assert f"selfheal_scorer_adapter_rejected_total {float(len(cases))}" in r.read().decode()
    # and a signed, sound adapter is still taken
    produce_adapter(producer, topics.weights, TEST_SIGNER, good, b, 12, 0)
    producer.flush()
    wait_until(lambda: service.follower.accepted == 1)
    wait_until(lambda: service.core.live.version == 12)


def test_two_scorers_in_a_group_split_the_load(seed_bundle, seed_scenario, kafka, topics, group, run_service):
    a, b = scorer(seed_bundle, kafka, topics, group), scorer(seed_bundle, kafka, topics, group)
    run_service(a)
    run_service(b)
    st = seed_scenario.stream
    features = list(seed_bundle.features)
    sent: list[str] = []
    deadline = time.monotonic() + 60
    # keep the stream flowing until the group has formed and both members have scored
    while not (a.batches > 0 and b.batches > 0) and time.monotonic() < deadline:
        ids = [f"tx-{len(sent) + i}" for i in range(200)]
        k = len(sent) % 9000
        produce_rows(kafka, topics.transactions, ids, st.X[k : k + 200], features)
        sent += ids
        time.sleep(0.1)
    assert a.batches > 0 and b.batches > 0
    msgs = read_n(kafka, topics.decisions, len(sent))
    assert {key(m) for m in msgs} == set(sent)


def test_metrics_and_health_endpoints(seed_bundle, seed_scenario, kafka, topics, group, run_service):
    service = scorer(seed_bundle, kafka, topics, group, metrics_port=0)
    run_service(service)
    wait_until(lambda: service.server is not None)
    produce_rows(
        kafka, topics.transactions, ["m1", "m2"], seed_scenario.stream.X[:2], list(seed_bundle.features)
    )
    assert len(read_n(kafka, topics.decisions, 2)) == 2  # both scored (perhaps in two batches), delivered
    assert service.server is not None
    base = f"http://127.0.0.1:{service.server.port}"
    with urllib.request.urlopen(f"{base}/metrics") as r:
        text = r.read().decode()
    assert "selfheal_scorer_transactions_total 2.0" in text
    assert "selfheal_scorer_decisions_total 2.0" in text
    assert "selfheal_scorer_batch_seconds_bucket" in text
    assert "selfheal_scorer_adapter_version" in text and "selfheal_scorer_consumer_lag" in text
    with urllib.request.urlopen(f"{base}/health") as r:
        health = orjson.loads(r.read())
    assert health["status"] == "ok" and health["bundle"] == seed_bundle.id and health["adapter_version"] == 0
