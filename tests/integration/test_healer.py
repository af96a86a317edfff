from __future__ import annotations

import threading

import orjson
import pytest

from services.healer.service import HealerService, HealerServiceConfig
from services.monitor.service import MonitorConfig, MonitorService
from services.scorer.service import ScorerConfig, ScorerService
from shared.data import build
from shared.kafka import TrackedProducer, read_topic
from shared.loadgen import produce_stream
from shared.messages import Transaction, encode_transaction
from shared.registry import Snapshot

from .conftest import TEST_SIGNER, Running, wait_until
from .helpers import decision, produce_rows, read_n, value


@pytest.fixture(scope="module")
def stream():
    return build("covariate", n_pre=1000, n_post=80000).stream


def start_services(b, kafka, topics, group, run_service) -> tuple[ScorerService, HealerService, Running]:
    """A scorer, a monitor and a healer on the topics, running (and the healer's handle)."""
    scorer = ScorerService(b, kafka, topics, ScorerConfig(group=f"{group}-s"), TEST_SIGNER)
    monitor = MonitorService(b, kafka, topics, MonitorConfig(group=f"{group}-m"))
    healer = HealerService(b, kafka, topics, HealerServiceConfig(group=f"{group}-h"), TEST_SIGNER)
    running = [run_service(s) for s in (scorer, monitor, healer)]
    return scorer, healer, running[-1]


def test_the_healer_heals_snapshots_publishes_and_rebuilds_on_restart(
    covariate_bundle, stream, kafka, topics, group, run_service
):
    b = covariate_bundle
    scorer, healer, healing = start_services(b, kafka, topics, group, run_service)
    produced = [0]
    # the drifted stream flows until the healer has published an accepted heal (whether a
    # given cycle passes the gate depends on its held-out labels, so give it as many as it needs)
    feeder = threading.Thread(
        target=lambda: produced.__setitem__(
            0,
            produce_stream(
                kafka,
                topics,
                stream,
                list(b.features),
                rate=1500,
                label_delay=300,
                stop=lambda: bool(healer.published),
            ),
        ),
    )
    feeder.start()
    wait_until(lambda: healer.healer.episode is not None, timeout=60)
    wait_until(lambda: bool(healer.published), timeout=60)  # an accepted heal went out
    feeder.join()
    version = healer.published[0]
    assert version >= 1
    wait_until(lambda: scorer.core.live.version >= version, timeout=30)
    sent = stream.ids[: produced[0]].tolist()
    decisions = read_n(kafka, topics.decisions, len(sent))
    assert {orjson.loads(value(m))["id"] for m in decisions} == set(sent)
    # the stream may have been scored before the swap; transactions after it carry the new version
    later = [f"after-{i}" for i in range(20)]
    produce_rows(kafka, topics.transactions, later, stream.X[:20], list(b.features))
    after = [orjson.loads(value(m)) for m in read_n(kafka, topics.decisions, len(sent) + 20)]
    assert {d["id"] for d in after} >= set(later)
    assert min(d["adapter_version"] for d in after if d["id"] in later) >= 1
    # every heal is in the registry topic: a pre and a post snapshot each
    snaps = [Snapshot.from_bytes(value(m), b.config) for m in read_topic(kafka, topics.registry)]
    kinds = [s.kind for s in snaps]
    assert kinds[0] == "initial" and kinds.count("pre") == kinds.count("post") >= 1
    assert any(s.kind == "post" and s.accepted and s.version == version for s in snaps)
    # backbone and head never move: the scorer's base equals the bundle's
    for k, v in scorer.core.model.base_state().items():
        assert v.equal(b.base_state[k])
    # a restarted healer rebuilds its state from the registry topic (the first one stopped: labels
    # still in flight would let it heal on while the second reads the topic)
    healing.halt()
    live = healer.healer.version
    n_snaps = len(healer.registry)
    again = HealerService(b, kafka, topics, HealerServiceConfig(group=f"{group}-h2"), TEST_SIGNER)
    assert again.rebuilt == n_snaps >= len(snaps)
    assert again.healer.version == live


def test_an_operator_rollback_reaches_the_healer_and_the_weights_topic(
    covariate_bundle, kafka, topics, group, run_service, monkeypatch, capsys, signer
):
    import torch

    from services.cli import main
    from shared.kafka import TrackedProducer
    from shared.kafka.registry_store import KafkaSnapshotStore
    from shared.messages.adapters import decode_adapter
    from shared.registry import Registry, Snapshot

    b = covariate_bundle
    healer = HealerService(b, kafka, topics, HealerServiceConfig(group=group), signer)
    run_service(healer)
    # a post-heal snapshot from earlier, as another healer would have left it
    store = KafkaSnapshotStore(kafka, topics.registry, b.config, TrackedProducer(kafka), TEST_SIGNER)
    older = Registry(store, b.id)
    adapter = {k: v.clone() for k, v in b.adapter_state.items()}
    adapter["scale"] = torch.tensor(0.3)
    post = older.record("post", adapter, 7, parent=0, metrics={"f1": 0.7}, heal=1)
    wait_until(lambda: len(healer.registry) == 2)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap_servers or "")
    for field, env in (("registry", "ADAPTER_REGISTRY"), ("weights", "ADAPTER_WEIGHTS")):
        monkeypatch.setenv(f"SELFHEAL_TOPIC_{env}", getattr(topics, field))
    bundle_dir = b.save(__import__("tempfile").mkdtemp())
    assert main(["registry", "list", "--bundle", str(bundle_dir)]) == 0
    assert post.id in capsys.readouterr().out
    assert main(["registry", "rollback", post.id, "--bundle", str(bundle_dir)]) == 0
    wait_until(lambda: healer.healer.version == 7)
    assert healer.healer.live.kind == "manual"
    weights = list(read_topic(kafka, topics.weights))
    assert decode_adapter(value(weights[-1]), b.config, b.id).version == 7
    # a "manual" snapshot without the key's signature is refused: the live adapter stays
    forged = Snapshot(len(healer.registry), "manual", 99, 7, b.id, adapter)
    producer = TrackedProducer(kafka)
    producer.produce(topics.registry, forged.to_bytes(), key=forged.id)
    producer.flush()
    wait_until(lambda: healer.metrics.bad_snapshots._value.get() == 1)
    assert healer.healer.version == 7 and forged.id not in {s.id for s in healer.registry.snapshots()}


def test_degraded_live_quality_rolls_back_through_the_registry(
    covariate_bundle, kafka, topics, group, run_service
):
    import time

    import torch

    from shared.healing import HealConfig
    from shared.healing.healer import HealerConfig
    from shared.healing.label_guard import LabelGuardConfig
    from shared.healing.schedule import ScheduleConfig
    from shared.kafka import TrackedProducer
    from shared.kafka.registry_store import KafkaSnapshotStore
    from shared.messages import Label, encode_label
    from shared.registry import Registry, RollbackPolicy

    b = covariate_bundle
    cfg = HealerServiceConfig(
        group=group,
        healer=HealerConfig(
            heal=HealConfig(gate=False),
            schedule=ScheduleConfig(heal_every=400),  # few heals: the watch judges the live adapter
            # on its own decisions
            quality_rows=50,
            rollback=RollbackPolicy(window=2, min_updates=2),
            # the shadow agrees with the wrong decisions: this is the watch's test
            label_guard=LabelGuardConfig(on=False),
        ),
    )
    service = HealerService(b, kafka, topics, cfg, TEST_SIGNER)
    run_service(service)
    st = build("covariate", n_pre=0, n_post=3000).stream
    p = TrackedProducer(kafka)
    now = time.time() * 1e3
    for i in range(1000):
        p.produce(
            topics.transactions,
            encode_transaction(Transaction.from_row(st.ids[i], b.features, st.X[i].tolist(), now)),
            key=st.ids[i],
        )
    p.produce(
        topics.alerts,
        orjson.dumps(
            {
                "detector": "fidi",
                "feature": "fidi",
                "statistic": 2.0,
                "threshold": 1.0,
                "state": "drift",
                "ts": now,
                "onset_rows": 1000,
            }
        ),
        key="fidi",
    )
    for i in range(400):
        p.produce(topics.labels, encode_label(Label(st.ids[i], int(st.y[i]))), key=st.ids[i])
    p.flush()
    wait_until(lambda: service.healer.version >= 1, timeout=60)
    # a better post-heal snapshot from this episode, as the registry may hold
    better = {k: v.clone() for k, v in b.adapter_state.items()}
    better["scale"] = torch.tensor(0.2)
    Registry(KafkaSnapshotStore(kafka, topics.registry, b.config, p, TEST_SIGNER), b.id).record(
        "post", better, 50, parent=0, metrics={"f1": 0.99, "accuracy": 0.99}, heal=99, note="from elsewhere"
    )
    wait_until(lambda: any(s.version == 50 for s in service.registry.snapshots()))

    def decide_and_label(lo: int, hi: int, right: bool) -> None:
        for i in range(lo, hi):  # the transaction, then its decision, then (later) its label
            tx = Transaction.from_row(st.ids[i], b.features, st.X[i].tolist(), time.time() * 1e3)
            p.produce(topics.transactions, encode_transaction(tx), key=st.ids[i])
        p.flush()
        wait_until(lambda: service.healer.join.seen >= hi)
        for i in range(lo, hi):
            fraud = bool(st.y[i]) if right else not bool(st.y[i])
            # the shadow agrees: this test is the quality watch's
            d = decision(st.ids[i], fraud, fraud, service.healer.version, b.id, b.threshold)
            p.produce(topics.decisions, d, key=st.ids[i])
        p.flush()
        time.sleep(0.5)  # decisions first, as in life: labels come later
        for i in range(lo, hi):
            p.produce(topics.labels, encode_label(Label(st.ids[i], int(st.y[i]))), key=st.ids[i])
        p.flush()

    decide_and_label(1000, 1200, right=True)  # the baseline: good decisions
    wait_until(lambda: service.healer.watch.baseline_f1 is not None, timeout=30)
    decide_and_label(1200, 1400, right=False)  # then every decision wrong (poisoned, say)
    wait_until(lambda: 50 in service.published, timeout=30)
    kinds = [s.kind for s in service.registry.snapshots() if s.version == 50]
    assert "rollback" in kinds
    alerts = [orjson.loads(value(m)) for m in read_topic(kafka, topics.alerts)]
    rollbacks = [a for a in alerts if a["detector"] == "healer" and a["state"] == "rollback"]
    assert rollbacks and rollbacks[-1]["to_version"] == 50 and "below the baseline" in rollbacks[-1]["reason"]


def test_a_poisoned_label_feed_is_held_back_and_reported_on_drift_alerts(
    covariate_bundle, kafka, topics, group, run_service
):
    import time

    from shared.kafka import TrackedProducer
    from shared.messages import Label, encode_label

    b = covariate_bundle
    service = HealerService(b, kafka, topics, HealerServiceConfig(group=group), TEST_SIGNER)
    run_service(service)
    st = build("covariate", n_pre=0, n_post=1000).stream
    shadow = b.new_model().predict_proba(st.X) >= b.threshold
    p = TrackedProducer(kafka)
    now = time.time() * 1e3
    for i in range(1000):
        p.produce(
            topics.transactions,
            encode_transaction(Transaction.from_row(st.ids[i], b.features, st.X[i].tolist(), now)),
            key=st.ids[i],
        )
        d = decision(st.ids[i], bool(shadow[i]), bool(shadow[i]), 0, b.id, b.threshold)
        p.produce(topics.decisions, d, key=st.ids[i])
    p.flush()
    wait_until(lambda: service.healer.join.seen == 1000 and service.healer.join.decided == 1000)
    for i in range(300):  # a broken feed: every label inverted
        p.produce(topics.labels, encode_label(Label(st.ids[i], 1 - int(st.y[i]))), key=st.ids[i])
    p.flush()
    wait_until(lambda: service.healer.labels_quarantined == 300, timeout=60)
    assert service.healer.join.stats()["labelled"] == 0  # none reached the training set
    assert service.health()["labels"].startswith("healing paused")
    for i in range(300, 500):  # the feed is mended
        p.produce(topics.labels, encode_label(Label(st.ids[i], int(st.y[i]))), key=st.ids[i])
    p.flush()
    wait_until(lambda: service.health()["labels"] == "trusted")
    alerts = [orjson.loads(value(m)) for m in read_n(kafka, topics.alerts, 4)]
    states = [(a["detector"], a["feature"], a["state"]) for a in alerts]
    assert states == [("healer", "labels", "suspect")] * 3 + [("healer", "labels", "trusted")]
    assert all(a["statistic"] < -0.05 and "kappa" in a["reason"] for a in alerts[:3])


def test_the_healer_heals_before_any_label_and_says_why_on_drift_alerts(
    covariate_bundle, stream, kafka, topics, group, run_service
):
    """No label ever comes: the diagnosis goes on drift-alerts, the label-free adapter to
    the scorers (with its input calibration) and into the registry with the diagnosis as
    its note."""
    from shared.messages import Alert, decode_alert

    b = covariate_bundle
    scorer, healer, _ = start_services(b, kafka, topics, group, run_service)
    feeder = threading.Thread(
        target=produce_stream,
        args=(kafka, topics, stream, list(b.features)),
        kwargs={"rate": 1500, "label_delay": None, "stop": lambda: bool(healer.published)},
    )
    feeder.start()
    wait_until(lambda: bool(healer.published), timeout=90)
    feeder.join()
    version = healer.published[0]
    wait_until(lambda: scorer.core.live.version >= version, timeout=30)
    assert scorer.core.live.layer.calibrated  # the scorers undo the unit change
    alerts = [decode_alert(value(m)) for m in read_topic(kafka, topics.alerts)]
    diagnoses = [a for a in alerts if isinstance(a, Alert) and a.feature == "diagnosis"]
    assert diagnoses and diagnoses[0].state == "recalibrate"
    assert "V14" in str(diagnoses[0].details["shifted"]) and diagnoses[0].details["accepted"] == 1
    snaps = [Snapshot.from_bytes(value(m), b.config) for m in read_topic(kafka, topics.registry)]
    live = next(s for s in snaps if s.kind == "post" and s.version == version)
    assert live.accepted and live.note.startswith("recalibrate") and "estimated_cost_after" in live.metrics
    assert float(live.adapter["input_scale"].max()) > 1.1
    health = healer.health()
    assert health["diagnosis"]["action"] == "recalibrate"


def test_a_batch_of_only_malformed_transactions_leaves_the_healer_running(
    covariate_bundle, kafka, topics, group, run_service
):
    """Found by pointing another client at the stack: a batch whose every transaction the
    healer's decoder refuses (the scorer dead-letters them) stopped the healer, and with it
    `selfheal up`."""
    import time

    from shared.kafka import TrackedProducer

    b = covariate_bundle
    service = HealerService(b, kafka, topics, HealerServiceConfig(group=group), TEST_SIGNER)
    running = run_service(service)
    wait_until(lambda: service.assigned > 0)
    p = TrackedProducer(kafka)
    for i in range(5):  # wrong feature names: not one good record in the batch
        p.produce(
            topics.transactions, orjson.dumps({"id": f"bad-{i}", "features": {"x": 1.0}}), key=f"bad-{i}"
        )
    p.flush()
    time.sleep(3)  # its next batches have been taken
    good = build("covariate", n_pre=0, n_post=3).stream
    produce_rows(kafka, topics.transactions, [str(i) for i in good.ids], good.X, list(b.features))
    wait_until(lambda: service.healer.join.seen == 3)
    assert running.thread.is_alive()


def test_above_the_log_capacity_the_healer_samples_says_so_and_counts_every_label_it_cannot_join(
    covariate_bundle, kafka, topics, group, run_service
):
    from shared.healing.healer import HealerConfig
    from shared.messages import Label, encode_label

    b = covariate_bundle
    cfg = HealerServiceConfig(group=group, healer=HealerConfig(recent_rows=500, log_capacity=1000.0))
    service = HealerService(b, kafka, topics, cfg, TEST_SIGNER)
    run_service(service)
    rows = build("covariate", n_pre=0, n_post=6000).stream
    tx_ids = [str(i) for i in rows.ids]
    produce_rows(
        kafka, topics.transactions, tx_ids, rows.X, list(b.features), chunk=500
    )  # well above 1,000/s
    wait_until(lambda: service.healer.join.seen == 6000, timeout=60)
    join = service.health()["labels_join"]
    assert join["log_rate_ratio"] < 1 and join["input_rows_per_s"] > 1000
    assert join["log_rate_not_kept"] > 0 and join["log_capacity_rows_per_s"] == 1000.0
    assert service.metrics.log_sample._value.get() == join["log_rate_ratio"]
    p = TrackedProducer(kafka)
    for i in tx_ids[:1000]:  # rows long out of memory: in the log, or left out by the sample
        p.produce(topics.labels, encode_label(Label(i, 0)), key=i)
    p.flush()
    counts = lambda: service.health()["labels_join"]  # noqa: E731
    told = ("labels_joined", "labels_judging", "labels_sampled_out")  # judging: found, their chunk not full
    wait_until(lambda: sum(counts()[k] for k in told) == 1000, timeout=30)
    assert counts()["labels_sampled_out"] > 0 and counts()["labels_pending"] == 0
