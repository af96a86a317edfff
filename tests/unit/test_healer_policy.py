from __future__ import annotations

import numpy as np
import pytest

from shared.healing import HealConfig
from shared.healing.healer import Healer, HealerConfig
from shared.registry import DirectoryStore, MemoryStore, Registry, RollbackPolicy


@pytest.fixture
def drifted(covariate_scenario):
    st = covariate_scenario.stream
    d = st.drift_at
    return list(st.ids[d : d + 1500]), st.X[d : d + 1500], st.y[d : d + 1500]


def test_no_heal_outside_an_episode_or_before_enough_labels(covariate_bundle, drifted):
    ids, X, y = drifted
    healer = Healer(covariate_bundle, Registry(MemoryStore(), covariate_bundle.id))
    healer.add_transactions(ids, X)
    assert healer.ready() == "no drift episode" and healer.heal() is None
    assert healer.open_episode(onset_rows=1500) and not healer.open_episode(onset_rows=10)
    assert healer.ready() == "waiting for labels (0/100)"
    healer.add_labels(ids[:50], y[:50].tolist())
    assert healer.ready() == "waiting for labels (50/100)"
    healer.add_labels(ids[50:400], y[50:400].tolist())
    assert healer.ready() is None


def test_a_heal_records_pre_and_post_and_an_accepted_one_goes_live(covariate_bundle, drifted):
    ids, X, y = drifted
    reg = Registry(MemoryStore(), covariate_bundle.id)
    healer = Healer(covariate_bundle, reg)
    healer.add_transactions(ids, X)
    healer.open_episode(onset_rows=1500)
    healer.add_labels(ids[:1200], y[:1200].tolist())
    outcome = healer.heal()
    assert outcome is not None
    assert [s.kind for s in reg.snapshots()] == ["initial", "pre", "post"]
    assert outcome.pre.version == 0 and outcome.post.parent == 0 and outcome.post.version == 1
    assert {"accuracy", "f1"} <= outcome.post.metrics.keys()
    if outcome.accepted:
        assert healer.version == 1 and healer.live is outcome.post
    else:
        assert healer.version == 0


def test_the_episode_heals_only_on_its_own_rows(covariate_bundle, covariate_scenario):
    st = covariate_scenario.stream
    healer = Healer(covariate_bundle, Registry(MemoryStore(), covariate_bundle.id))
    healer.add_transactions(list(st.ids[:3000]), st.X[:3000])
    healer.open_episode(onset_rows=1000)
    assert healer.episode == 2000
    healer.add_labels(list(st.ids[:2500]), st.y[:2500].tolist())
    job = healer.prepare()
    assert job is not None and len(job.batch.y) == 1000 and job.batch.n_labelled == 500


def test_live_quality_degradation_rolls_back_to_the_best_post_heal(covariate_bundle, drifted):
    ids, X, y = drifted
    reg = Registry(MemoryStore(), covariate_bundle.id)
    cfg = HealerConfig(heal=HealConfig(gate=False), rollback=RollbackPolicy(window=2, min_updates=2))
    healer = Healer(covariate_bundle, reg, cfg)
    healer.add_transactions(ids, X)
    healer.open_episode(onset_rows=1500)
    healer.add_labels(ids[:300], y[:300].tolist())
    first = healer.heal()
    second = healer.heal()
    assert first is not None and second is not None and healer.version == 2
    # decisions by v1 and v2 that were right, then v2's that are wrong (poisoned, say)
    good, bad = ids[300:700], ids[700:1100]
    healer.add_decisions(good, (y[300:700] == 1).tolist(), [2] * 400)
    healer.add_labels(good, y[300:700].tolist())  # the baseline: perfect
    assert healer.watch.baseline_f1 == pytest.approx(1.0)
    healer.add_decisions(bad, (y[700:1100] == 0).tolist(), [2] * 400)
    healer.add_labels(bad, y[700:1100].tolist())
    snap, reason = healer.check_rollback()
    assert reason is not None and "below the baseline" in reason
    best = reg.best_post_heal("f1", since=healer.episode_seq)
    assert best is not None
    if best.version == 2:
        assert snap is None  # already on the best
    else:
        assert snap is not None and snap.kind == "rollback" and healer.version == best.version


def test_a_restarted_healer_resumes_from_the_registry(covariate_bundle, drifted, tmp_path):
    ids, X, y = drifted
    store = DirectoryStore(tmp_path, covariate_bundle.config)
    healer = Healer(
        covariate_bundle, Registry(store, covariate_bundle.id), HealerConfig(heal=HealConfig(gate=False))
    )
    healer.add_transactions(ids, X)
    healer.open_episode(onset_rows=1500)
    healer.add_labels(ids[:300], y[:300].tolist())
    assert healer.heal() is not None
    again = Healer(
        covariate_bundle, Registry(DirectoryStore(tmp_path, covariate_bundle.config), covariate_bundle.id)
    )
    assert again.version == healer.version == 1
    assert len(again.registry) == 3 and again.n_heals == 1
    assert all(np.array_equal(again.adapter[k].numpy(), healer.adapter[k].numpy()) for k in healer.adapter)


def test_healing_that_loses_to_the_shadow_is_undone_and_paused(covariate_bundle, drifted):
    ids, X, y = drifted
    reg = Registry(MemoryStore(), covariate_bundle.id)
    cfg = HealerConfig(heal=HealConfig(gate=False), shadow_min_rows=300)
    healer = Healer(covariate_bundle, reg, cfg)
    healer.add_transactions(ids, X)
    healer.open_episode(onset_rows=1500)
    healer.add_labels(ids[:300], y[:300].tolist())
    assert healer.heal() is not None and healer.version == 1
    # v1's decisions are wrong where the shadow's are right, on the same transactions
    rows = slice(300, 800)
    truth = y[rows] == 1
    healer.add_decisions(ids[rows], (~truth).tolist(), [1] * 500, truth.tolist())
    healer.add_labels(ids[rows], y[rows].tolist())
    n, z = healer.versus_shadow()
    assert n == 500 and z > 2
    snap, reason = healer.check_rollback()
    assert snap is not None and snap.kind == "rollback" and snap.version == 0 and healer.version == 0
    assert reason is not None and "against the shadow" in reason
    assert healer.ready() is not None and "paused" in healer.ready()  # type: ignore[operator]
    assert healer.heal() is None
    healer.close_episode()
    assert healer.open_episode(onset_rows=100) and healer.paused is None  # a new episode heals again


def test_healing_that_beats_the_shadow_stays(covariate_bundle, drifted):
    ids, X, y = drifted
    healer = Healer(
        covariate_bundle,
        Registry(MemoryStore(), covariate_bundle.id),
        HealerConfig(heal=HealConfig(gate=False)),
    )
    healer.add_transactions(ids, X)
    healer.open_episode(onset_rows=1500)
    healer.add_labels(ids[:300], y[:300].tolist())
    assert healer.heal() is not None
    rows = slice(300, 800)
    truth = y[rows] == 1
    healer.add_decisions(ids[rows], truth.tolist(), [1] * 500, (~truth).tolist())
    healer.add_labels(ids[rows], y[rows].tolist())
    assert healer.versus_shadow()[1] < 0
    assert healer.check_rollback() == (None, None) and healer.version == 1
