from __future__ import annotations

import threading

import orjson
import pytest

from services.healer.service import HealerService, HealerServiceConfig
from services.monitor.service import MonitorConfig, MonitorService
from services.scorer.service import ScorerConfig, ScorerService
from shared.data import build
from shared.kafka import read_topic
from shared.loadgen import produce_stream
from shared.registry import Snapshot

from .conftest import wait_until
from .helpers import read_n, value


@pytest.fixture(scope="module")
def stream():
    return build("covariate", n_pre=1000, n_post=9000).stream


def test_the_healer_heals_snapshots_publishes_and_rebuilds_on_restart(
    covariate_bundle, stream, kafka, topics, group, run_service
):
    b = covariate_bundle
    scorer = ScorerService(b, kafka, topics, ScorerConfig(group=f"{group}-s"))
    monitor = MonitorService(b, kafka, topics, MonitorConfig(group=f"{group}-m"))
    healer = HealerService(b, kafka, topics, HealerServiceConfig(group=f"{group}-h"))
    for s in (scorer, monitor, healer):
        run_service(s)
    feeder = threading.Thread(
        target=produce_stream,
        args=(kafka, topics, stream, list(b.features)),
        kwargs={"rate": 1500, "label_delay": 300},
    )
    feeder.start()
    wait_until(lambda: healer.healer.episode is not None, timeout=60)
    wait_until(lambda: bool(healer.published), timeout=60)  # an accepted heal went out
    feeder.join()
    version = healer.published[0]
    assert version >= 1
    wait_until(lambda: scorer.core.live.version >= version, timeout=30)
    decisions = read_n(kafka, topics.decisions, len(stream))
    assert {orjson.loads(value(m))["id"] for m in decisions} == set(stream.ids.tolist())
    assert max(orjson.loads(value(m))["adapter_version"] for m in decisions) >= 1
    # every heal is in the registry topic: a pre and a post snapshot each
    snaps = [Snapshot.from_bytes(value(m), b.config) for m in read_topic(kafka, topics.registry)]
    kinds = [s.kind for s in snaps]
    assert kinds[0] == "initial" and kinds.count("pre") == kinds.count("post") >= 1
    assert any(s.kind == "post" and s.accepted and s.version == version for s in snaps)
    # backbone and head never move: the scorer's base equals the bundle's
    for k, v in scorer.core.model.base_state().items():
        assert v.equal(b.base_state[k])
    # a restarted healer rebuilds its state from the registry topic
    live = healer.healer.version
    n_snaps = len(healer.registry)
    again = HealerService(b, kafka, topics, HealerServiceConfig(group=f"{group}-h2"))
    assert again.rebuilt == n_snaps >= len(snaps)
    assert again.healer.version == live
