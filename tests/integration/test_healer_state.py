"""What outlives the healer on one machine: the registry's mirror and the feature log on
disk. The embedded broker is memory-only, so a restarted ``selfheal up`` starts on empty
topics: the healer restores the registry from disk, re-publishes the live adapter, and
labels still to come find their transactions in the feature log."""

from __future__ import annotations

import os
import time

import orjson

from services.healer.service import HealerService, HealerServiceConfig
from services.scorer.service import ScorerConfig, ScorerService
from shared.data import build
from shared.healing import HealConfig
from shared.healing.healer import HealerConfig
from shared.kafka import EmbeddedBroker, KafkaSettings, Topics, TrackedProducer, create_topics
from shared.messages import Label, Transaction, encode_label, encode_transaction

from .conftest import TEST_SIGNER, wait_until
from .helpers import unique_topics


def fresh_topics(kafka: KafkaSettings) -> Topics:
    """Empty topics, as a restarted embedded broker has."""
    t = unique_topics()
    create_topics(kafka, t.specs())
    return t


def test_a_restart_on_empty_topics_resumes_the_registry_the_live_adapter_and_the_join(
    covariate_bundle, kafka, topics, group, run_service, tmp_path
):
    b = covariate_bundle
    st = build("covariate", n_pre=0, n_post=1000).stream
    cfg = HealerServiceConfig(
        group=group, state_dir=str(tmp_path), healer=HealerConfig(heal=HealConfig(gate=False))
    )
    first = run_service(HealerService(b, kafka, topics, cfg, TEST_SIGNER))
    healer = first.service
    p = TrackedProducer(kafka)
    t0 = time.time() * 1e3
    for i in range(1000):
        tx = Transaction.from_row(st.ids[i], b.features, st.X[i].tolist(), t0 + i)
        p.produce(topics.transactions, encode_transaction(tx), key=st.ids[i])
    drift = {"detector": "fidi", "feature": "fidi", "statistic": 2.0, "threshold": 1.0, "state": "drift"}
    p.produce(topics.alerts, orjson.dumps({**drift, "ts": t0 + 1000, "onset_ts": t0}), key="fidi")
    for i in range(400):
        p.produce(topics.labels, encode_label(Label(st.ids[i], int(st.y[i]))), key=st.ids[i])
    p.flush()
    wait_until(lambda: healer.healer.version >= 1, timeout=60)
    first.halt()  # SIGTERM: the last heal recorded, the rows in memory written to the log
    live, snapshots = healer.healer.version, [s.id for s in healer.registry.snapshots()]

    empty = fresh_topics(kafka)  # the broker lost everything
    again = HealerService(b, kafka, empty, cfg, TEST_SIGNER)
    assert again.mirror is not None and again.mirror.restored == len(snapshots)
    assert [s.id for s in again.registry.snapshots()] == snapshots
    assert again.healer.version == live
    assert again.healer.join.stats()["labels_restored"] == 400
    scorer = ScorerService(b, kafka, empty, ScorerConfig(group=f"{group}-s"), TEST_SIGNER)
    run_service(scorer)
    run_service(again)
    wait_until(lambda: scorer.core.live.version == live, timeout=30)  # re-published, adopted
    for i in range(400, 600):  # labels still to come: their transactions went with the old broker
        p.produce(empty.labels, encode_label(Label(st.ids[i], int(st.y[i]))), key=st.ids[i])
    p.flush()
    wait_until(lambda: again.healer.join.stats()["labels_joined"] == 200, timeout=30)
    assert again.healer.join.stats()["labels_pending"] == 0


def test_the_broker_memory_watch_warns_before_the_budget(tmp_path):
    from services.brokermemory import BrokerMemory
    from services.processes import vm_rss_mb

    with EmbeddedBroker() as broker:
        assert broker.pid is not None
        settings = KafkaSettings().with_bootstrap(broker.bootstrap)
        t = fresh_topics(settings)
        base = vm_rss_mb(broker.pid)
        assert base is not None
        watch = BrokerMemory(budget_mb=base + 40)  # a small budget: 40 MB more than it holds now
        assert watch.update(base, time.monotonic()) is None
        p = TrackedProducer(settings)
        payloads = [os.urandom(1000) for _ in range(1000)]  # incompressible, as records are
        warnings: list[str] = []
        for _ in range(200):  # 200 x 1 MB at most; the broker never frees a record
            for k in range(1000):
                p.produce(t.transactions, payloads[k], key=str(k))
            p.flush()
            warning = watch.update(vm_rss_mb(broker.pid) or 0.0, time.monotonic())
            if warning:
                warnings.append(warning)
            if watch.warned == 3:
                break
        assert len(warnings) == 3  # at 50%, 80% and 95% of the budget, each once
        shares = [int(w.split("(")[1].split("%")[0]) for w in warnings]
        assert 50 <= shares[0] < 80 <= shares[1] < 95 <= shares[2]
        assert "real cluster" in warnings[-1] and "MB/min" in warnings[-1]
