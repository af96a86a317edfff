from __future__ import annotations

import numpy as np
import pytest

from shared.errors import ConfigError
from shared.healing import HealConfig
from shared.healing.events import Degraded, LabelsJudged, RolledBack
from shared.healing.healer import Healer, HealerConfig
from shared.healing.label_guard import LabelGuardConfig
from shared.healing.own_watch import WatchConfig
from shared.healing.schedule import ScheduleConfig
from shared.healing.shadow_guard import ShadowGuardConfig
from shared.registry import DirectoryStore, MemoryStore, Registry, RollbackPolicy

# tests that open episodes by hand: the frozen posteriors' own detector would open one first
MANUAL = HealerConfig(watch=WatchConfig(prior=False))
LABELS_ONLY = ScheduleConfig(heal_before_labels=False)


def heal(healer: Healer):
    """prepare, run and finish in one call, as the offline runner and the service do apart."""
    job = healer.prepare()
    return None if job is None else healer.finish(job, healer.run(job))


def event_times(n: int) -> list[float]:
    """One transaction a millisecond."""
    return [float(i) for i in range(n)]


@pytest.fixture
def drifted(covariate_scenario):
    st = covariate_scenario.stream
    d = st.drift_at
    return list(st.ids[d : d + 1500]), st.X[d : d + 1500], st.y[d : d + 1500]


def test_no_heal_outside_an_episode_or_before_enough_labels(covariate_bundle, drifted):
    ids, X, y = drifted
    cfg = HealerConfig(schedule=LABELS_ONLY, watch=WatchConfig(prior=False))
    healer = Healer(covariate_bundle, Registry(MemoryStore(), covariate_bundle.id), cfg)
    healer.add_transactions(ids, X, event_times(len(ids)))
    assert healer.ready() == "no drift episode" and heal(healer) is None
    assert healer.open_episode(onset_rows=1500) and not healer.open_episode(onset_rows=10)
    assert healer.ready() == "waiting for labels (0/100); healing before labels is off"
    healer.add_labels(ids[:50], y[:50].tolist())  # held until a chunk of 100 can be checked
    assert healer.ready() == "waiting for labels (0/100; 50 more being checked); healing before labels is off"
    healer.add_labels(ids[50:150], y[50:150].tolist())
    assert int(y[:100].sum()) < 20 and "/20 frauds" in str(healer.ready())  # 100 checked, too few frauds
    healer.add_labels(ids[50:400], y[50:400].tolist())
    assert healer.ready() is None


def test_a_heal_records_pre_and_post_and_an_accepted_one_goes_live(covariate_bundle, drifted):
    ids, X, y = drifted
    reg = Registry(MemoryStore(), covariate_bundle.id)
    healer = Healer(covariate_bundle, reg)
    healer.add_transactions(ids, X, event_times(len(ids)))
    healer.open_episode(onset_rows=1500)
    healer.add_labels(ids[:1200], y[:1200].tolist())
    outcome = heal(healer)
    assert outcome is not None
    assert [s.kind for s in reg.snapshots()] == ["initial", "pre", "post"]
    assert outcome.pre.version == 0 and outcome.post.parent == 0 and outcome.post.version == 1
    assert {"accuracy", "f1"} <= outcome.post.metrics.keys()
    if outcome.accepted:
        assert healer.version == 1 and healer.live is outcome.post
    else:
        assert healer.version == 0


def test_labelled_heals_come_as_the_episode_labels_grow_by_a_share(covariate_bundle, drifted):
    """A heal on 1,200 labels waits for 25% more (300), not for the next 100."""
    ids, X, y = drifted
    schedule = ScheduleConfig(heal_before_labels=False, heal_growth=0.25, heal_every_max=1000)
    cfg = HealerConfig(schedule=schedule, watch=WatchConfig(prior=False))
    healer = Healer(covariate_bundle, Registry(MemoryStore(), covariate_bundle.id), cfg)
    healer.add_transactions(ids, X, event_times(len(ids)))
    healer.open_episode(onset_rows=1500)
    healer.add_labels(ids[:1200], y[:1200].tolist())
    assert healer.due() and heal(healer) is not None and not healer.due()
    healer.add_labels(ids[1200:1400], y[1200:1400].tolist())
    assert not healer.due()  # 200 new labels: a 100-label step would be due
    healer.add_labels(ids[1400:1500], y[1400:1500].tolist())
    assert healer.due()


def test_a_heal_step_that_cannot_grow_is_refused():
    with pytest.raises(ConfigError, match="heal_growth >= 0"):
        ScheduleConfig(heal_growth=-0.1)
    assert ScheduleConfig(heal_every=400).heal_every_max < 400  # the share is capped; the 400 stands


def test_the_episode_heals_only_on_its_own_rows(covariate_bundle, covariate_scenario):
    st = covariate_scenario.stream
    healer = Healer(covariate_bundle, Registry(MemoryStore(), covariate_bundle.id), MANUAL)
    healer.add_transactions(list(st.ids[:3000]), st.X[:3000], event_times(3000))
    healer.open_episode(onset_rows=1000)
    assert healer.episode is not None and healer.episode.start == 2000
    healer.add_labels(list(st.ids[:2500]), st.y[:2500].tolist())
    job = healer.prepare()
    assert job is not None and len(job.batch.y) == 1000 and job.batch.n_labelled == 500


def test_live_quality_degradation_rolls_back_to_the_best_post_heal(covariate_bundle, drifted):
    ids, X, y = drifted
    reg = Registry(MemoryStore(), covariate_bundle.id)
    cfg = HealerConfig(heal=HealConfig(gate=False), rollback=RollbackPolicy(window=2, min_updates=2))
    healer = Healer(covariate_bundle, reg, cfg)
    healer.add_transactions(ids, X, event_times(len(ids)))
    healer.open_episode(onset_rows=1500)
    healer.add_labels(ids[:300], y[:300].tolist())
    first = heal(healer)
    second = heal(healer)
    assert first is not None and second is not None and healer.version == 2
    # decisions by v1 and v2 that were right, then v2's that are wrong (poisoned, say)
    good, bad = ids[300:700], ids[700:1100]
    healer.add_decisions(good, (y[300:700] == 1).tolist(), [2] * 400)
    healer.add_labels(good, y[300:700].tolist())  # the baseline: perfect
    assert healer.watch.baseline_f1 == pytest.approx(1.0)
    healer.add_decisions(bad, (y[700:1100] == 0).tolist(), [2] * 400)
    healer.add_labels(bad, y[700:1100].tolist())
    event = healer.check_rollback()
    assert event is not None and "below the baseline" in event.reason
    best = reg.best_post_heal("f1", since=healer.episode_seq)
    assert best is not None
    if best.version == 2:
        assert isinstance(event, Degraded)  # already on the best
    else:
        assert isinstance(event, RolledBack) and event.snapshot.kind == "rollback"
        assert healer.version == best.version and event.from_version == 2


def test_a_restarted_healer_resumes_from_the_registry(covariate_bundle, drifted, tmp_path):
    healer = healed_once(covariate_bundle, drifted, DirectoryStore(tmp_path, covariate_bundle.config))
    again = Healer(
        covariate_bundle, Registry(DirectoryStore(tmp_path, covariate_bundle.config), covariate_bundle.id)
    )
    assert again.version == healer.version == 1
    assert len(again.registry) == 3 and again.n_heals == 1
    assert all(np.array_equal(again.adapter[k].numpy(), healer.adapter[k].numpy()) for k in healer.adapter)


def healed_once(bundle, drifted, store=None) -> Healer:
    """A healer in an episode, healed once (gate off) on the first 300 labels: v1 is live.
    ``store``: where its registry lives (None: in memory)."""
    ids, X, y = drifted
    cfg = HealerConfig(heal=HealConfig(gate=False), shadow_guard=ShadowGuardConfig(min_rows=300))
    healer = Healer(bundle, Registry(store or MemoryStore(), bundle.id), cfg)
    healer.add_transactions(ids, X, event_times(len(ids)))
    healer.open_episode(onset_rows=1500)
    healer.add_labels(ids[:300], y[:300].tolist())
    assert heal(healer) is not None and healer.version == 1
    return healer


def test_healing_that_loses_to_the_shadow_is_undone_and_paused(covariate_bundle, drifted):
    ids, _, y = drifted
    healer = healed_once(covariate_bundle, drifted)
    # v1's decisions are wrong where the shadow's are right, on the same transactions
    rows = slice(300, 800)
    truth = y[rows] == 1
    healer.add_decisions(ids[rows], (~truth).tolist(), [1] * 500, truth.tolist())
    healer.add_labels(ids[rows], y[rows].tolist())
    assert healer.check.shadow.n(1) == 500 and healer.check.shadow.z(1) > 2
    event = healer.check_rollback()
    assert isinstance(event, RolledBack) and event.snapshot.kind == "rollback"
    assert event.snapshot.version == 0 and healer.version == 0 and "against the shadow" in event.reason
    assert healer.ready() is not None and "paused" in healer.ready()  # type: ignore[operator]
    assert heal(healer) is None
    healer.watch.set_baseline(0.9, 0.9)  # and live quality below the first heal's baseline:
    for _ in range(5):
        healer.watch.update(0.2, 0.2)
    assert healer.watch.degraded is not None  # it would roll forward to v1 were healing not paused
    assert healer.check_rollback() is None and healer.version == 0
    healer.close_episode()
    assert healer.open_episode(onset_rows=100) and healer.check.paused is None  # a new episode heals again


def test_healing_that_beats_the_shadow_stays(covariate_bundle, drifted):
    ids, X, y = drifted
    healer = Healer(
        covariate_bundle,
        Registry(MemoryStore(), covariate_bundle.id),
        HealerConfig(heal=HealConfig(gate=False)),
    )
    healer.add_transactions(ids, X, event_times(len(ids)))
    healer.open_episode(onset_rows=1500)
    healer.add_labels(ids[:300], y[:300].tolist())
    assert heal(healer) is not None
    rows = slice(300, 800)
    truth = y[rows] == 1
    wrong = np.random.default_rng(0).random(500) < 0.3  # the shadow is wrong on 30% of them
    healer.add_decisions(ids[rows], truth.tolist(), [1] * 500, (truth ^ wrong).tolist())
    healer.add_labels(ids[rows], y[rows].tolist())
    assert healer.check.shadow.z(1) < 0
    assert healer.check_rollback() is None and healer.version == 1


def test_late_labels_of_a_replaced_adapter_do_not_undo_the_live_one(covariate_bundle, drifted):
    """Labels hours late describe decisions of adapters long replaced: they are no verdict on
    the adapter live now."""
    ids, _, y = drifted
    healer = healed_once(covariate_bundle, drifted)
    rows = slice(300, 800)
    truth = y[rows] == 1
    healer.add_decisions(ids[rows], (~truth).tolist(), [1] * 500, truth.tolist())  # v1 was wrong
    healer.add_labels(ids[700:1000], y[700:1000].tolist())
    assert heal(healer) is not None and healer.version == 2  # v2 went live before v1's labels came
    healer.add_labels(ids[300:700], y[300:700].tolist())
    assert healer.check.shadow.n(2) == 0 and healer.check_rollback() is None and healer.version == 2


def test_a_burst_of_flipped_labels_is_held_back_and_the_heal_it_reached_is_undone(covariate_bundle, drifted):
    """A poisoned label feed: the labels disagree with the bundle's own frozen model beyond
    chance. The first suspect chunk is set aside, the chunk before it withdrawn, the adapter
    healed since then rolled back to the best post-heal snapshot made before, and healing
    waits for clean chunks again."""
    ids, X, y = drifted
    b = covariate_bundle
    reg = Registry(MemoryStore(), b.id)
    healer = Healer(b, reg, HealerConfig(heal=HealConfig(gate=False), watch=WatchConfig(prior=False)))
    healer.add_transactions(ids, X, event_times(len(ids)))
    shadow = (b.new_model().predict_proba(X) >= b.threshold).tolist()
    healer.add_decisions(ids, shadow, [0] * len(ids), shadow)
    healer.open_episode(onset_rows=1500)
    labels = y.astype(float).copy()
    labels[370:600] = 1 - labels[370:600]  # the burst starts inside the chunk 300-400
    healer.add_labels(ids[:300], labels[:300].tolist())
    first = heal(healer)
    assert first is not None and first.accepted and healer.version == 1
    healer.drain_events()  # the episode opened
    healer.add_labels(ids[300:400], labels[300:400].tolist())  # 30 flipped of 100: passes the check
    assert healer.drain_events() == []
    second = heal(healer)
    assert second is not None and healer.version == 2  # healed on 30 flipped labels
    healer.add_labels(ids[400:500], labels[400:500].tolist())  # all flipped: suspect
    (event,) = healer.drain_events()
    assert isinstance(event, LabelsJudged) and event.state == "suspect" and event.kappa < -0.05
    rollback = healer.check_rollback()  # one chunk after the first flipped one
    assert isinstance(rollback, RolledBack) and rollback.snapshot.kind == "rollback"
    assert rollback.snapshot.version == 1 and healer.version == 1 and "kappa" in rollback.reason
    assert healer.join.stats()["labels_withdrawn"] == 100  # the chunk that let the burst in
    assert healer.ready() is not None and healer.ready().startswith("healing paused")  # type: ignore[union-attr]
    healer.add_labels(ids[500:600], labels[500:600].tolist())  # still flipped
    assert healer.check_rollback() is None and healer.labels_quarantined == 200
    healer.add_labels(ids[600:800], labels[600:800].tolist())  # clean again: two chunks
    assert [e.state for e in healer.drain_events() if isinstance(e, LabelsJudged)] == ["suspect", "trusted"]
    assert healer.ready() is None
    assert healer.episode is not None
    batch = healer.join.batch(healer.episode.start)
    assert batch.n_labelled == 300 + 200  # no quarantined or withdrawn label is in the training set


def test_labels_are_judged_only_against_known_shadow_verdicts(covariate_bundle, drifted):
    ids, X, y = drifted
    healer = Healer(covariate_bundle, Registry(MemoryStore(), covariate_bundle.id))
    healer.add_transactions(ids, X, event_times(len(ids)))
    healer.add_labels(ids[:200], (1 - y[:200]).tolist())  # flipped, but no decision seen: released
    assert healer.labels_quarantined == 0 and healer.join.stats()["labelled"] == 200


def test_labels_that_describe_a_distribution_the_stream_has_left_wait(covariate_bundle, covariate_scenario):
    """A drift still moving: the labels arriving describe rows the stream has since left."""
    st = covariate_scenario.stream
    d = st.drift_at
    cfg = HealerConfig(schedule=ScheduleConfig(stale_labels="wait"), watch=WatchConfig(prior=False))
    healer = Healer(covariate_bundle, Registry(MemoryStore(), covariate_bundle.id), cfg)
    old, new = list(st.ids[d - 1000 : d]), list(st.ids[d : d + 2000])
    healer.add_transactions(old + new, st.X[d - 1000 : d + 2000], event_times(3000))
    healer.open_episode(onset_ts=0.0)
    healer.add_labels(old, st.y[d - 1000 : d].tolist())  # labelled: before the drift; newest rows: after
    reason = healer.ready()
    assert reason is not None and reason.startswith("the newest labels describe an older distribution")
    healer.add_labels(new[:1000], st.y[d : d + 1000].tolist())  # fresher labels: the same world as now
    assert healer.ready() is None


def test_stale_labels_are_carried_to_the_present(covariate_bundle, covariate_scenario):
    """By default the labelled rows are aligned with the rows the stream shows now, on the
    features that moved between them."""
    st = covariate_scenario.stream
    d = st.drift_at
    healer = Healer(covariate_bundle, Registry(MemoryStore(), covariate_bundle.id), MANUAL)
    old, new = list(st.ids[d - 1000 : d]), list(st.ids[d : d + 1500])
    healer.add_transactions(old + new, st.X[d - 1000 : d + 1500], event_times(2500))
    healer.open_episode(onset_ts=0.0)
    healer.add_labels(old, st.y[d - 1000 : d].tolist())  # labelled: before the drift
    assert healer.ready() is None
    job = healer.prepare()
    assert job is not None and "V14" in healer.schedule.carried and "V1" not in healer.schedule.carried
    b = job.batch
    labelled = ~np.isnan(b.y)
    k = covariate_bundle.features.index("V14")
    gap = abs(np.median(b.X[labelled, k]) - np.median(b.X[~labelled, k]))
    assert gap < 0.05 * covariate_bundle.reference_std[k]  # carried onto the present
    with pytest.raises(ConfigError):
        ScheduleConfig(stale_labels="ignore")


def test_an_adapter_restored_from_disk_that_loses_to_the_shadow_is_withdrawn(
    covariate_bundle, drifted, tmp_path
):
    """Whatever made the live adapter (here: a heal of an earlier run, read back from the
    state directory), its own labelled decisions judge it; no episode or heal is needed."""
    ids, X, y = drifted
    healed_once(covariate_bundle, drifted, DirectoryStore(tmp_path, covariate_bundle.config))
    # no episode will open: the guard alone must act
    cfg = HealerConfig(watch=WatchConfig(loss=False, residual=False))
    again = Healer(
        covariate_bundle,
        Registry(DirectoryStore(tmp_path, covariate_bundle.config), covariate_bundle.id),
        cfg,
    )
    assert again.version == 1 and again.episode is None
    rows = slice(300, 800)
    truth = y[rows] == 1
    again.add_transactions(ids[rows], X[rows], event_times(500))
    again.add_decisions(ids[rows], (~truth).tolist(), [1] * 500, truth.tolist())
    again.add_labels(ids[rows], y[rows].tolist())
    event = again.check_rollback()
    assert isinstance(event, RolledBack) and event.snapshot.version == 0 and again.version == 0


def test_labels_that_show_the_frozen_model_got_worse_open_an_episode(covariate_bundle, covariate_scenario):
    """No detector alarms (none is fed an alert here), but the labels say the frozen model
    now errs: the healer opens an episode of its own, starting where the window began."""
    st = covariate_scenario.stream
    healer = Healer(
        covariate_bundle,
        Registry(MemoryStore(), covariate_bundle.id),
        HealerConfig(watch=WatchConfig(loss_rows=500, prior=False)),
    )
    assert healer.detectors.loss is not None
    clean = slice(0, 2000)
    ids = list(st.ids[clean])
    healer.add_transactions(ids, st.X[clean], event_times(2000))
    healer.add_decisions(ids, [False] * 2000, [0] * 2000)
    healer.add_labels(ids, st.y[clean].tolist())
    assert healer.episode is None  # the training regime: no drift
    flipped = slice(2000, 3500)  # a concept switch: the same rows, the opposite labels
    ids = list(st.ids[flipped])
    healer.add_transactions(ids, st.X[flipped], [2000.0 + k for k in range(1500)])
    healer.add_decisions(ids, [False] * 1500, [0] * 1500)
    healer.add_labels(ids, (1 - st.y[flipped]).tolist())
    assert healer.episode is not None and healer.episode.trigger == "labels_loss"
    assert 1500.0 <= healer.episode.start <= 2600.0


def test_labels_whose_errors_follow_the_inputs_open_an_episode(covariate_bundle, covariate_scenario):
    """The loss test is off here; the score test alone sees the switch and opens the
    episode, starting at its window's oldest row."""
    st = covariate_scenario.stream
    cfg = HealerConfig(watch=WatchConfig(loss=False, residual_rows=1000, prior=False))
    healer = Healer(covariate_bundle, Registry(MemoryStore(), covariate_bundle.id), cfg)
    clean, flipped = slice(0, 2000), slice(2000, 3500)
    for part, y, t0 in ((clean, st.y[clean], 0.0), (flipped, 1 - st.y[flipped], 2000.0)):
        ids, n = list(st.ids[part]), part.stop - part.start
        healer.add_transactions(ids, st.X[part], [t0 + k for k in range(n)])
        healer.add_decisions(ids, [False] * n, [0] * n)
        healer.add_labels(ids, y.tolist())
        if t0 == 0.0:
            assert healer.episode is None  # the training regime: no drift
    assert healer.episode is not None and healer.episode.trigger == "labels_residual"
    assert 1000.0 <= healer.episode.start <= 2600.0


def test_up_says_which_adapter_it_resumes_and_how_to_start_clean(covariate_bundle, drifted, tmp_path):
    from services.cli.stack import resumed_adapter

    bundle_dir = tmp_path / "bundle"
    covariate_bundle.save(bundle_dir)
    state = tmp_path / "state"
    assert "starting clean" in resumed_adapter(str(bundle_dir), str(state))
    healed_once(
        covariate_bundle,
        drifted,
        DirectoryStore(state / covariate_bundle.id / "registry", covariate_bundle.config),
    )
    said = resumed_adapter(str(bundle_dir), str(state))
    assert "RESUMING adapter v1" in said and "heal 1" in said and "--state-dir NEW_DIR" in said


def test_a_fraud_rate_the_frozen_posteriors_favour_opens_an_episode(covariate_bundle, covariate_scenario):
    """The frozen model's own posteriors: rows drawn before the drift at the training fraud
    rate open nothing; the same rows with three times the fraud open an episode (the
    label-free diagnosis then says why), with no alert."""
    healer = Healer(covariate_bundle, Registry(MemoryStore(), covariate_bundle.id))
    assert healer.detectors.prior is not None
    st = covariate_scenario.stream
    X, y = st.X[: st.drift_at], st.y[: st.drift_at] > 0.5
    rng = np.random.default_rng(0)
    calm = rng.choice(len(X), 6000)
    healer.add_transactions([f"c{i}" for i in range(6000)], X[calm], event_times(6000))
    assert healer.episode is None
    frauds, normals = np.flatnonzero(y), np.flatnonzero(~y)
    share = 3 * healer.detectors.prior.prior
    surge = np.where(rng.random(6000) < share, rng.choice(frauds, 6000), rng.choice(normals, 6000))
    healer.add_transactions([f"s{i}" for i in range(6000)], X[surge], [6000.0 + t for t in event_times(6000)])
    assert healer.episode is not None and healer.episode.trigger == "prior"


def test_labels_wait_for_their_cohort_before_they_count(covariate_bundle, drifted):
    """With ``settle_ms`` the analysts' first verdicts do not reach healing, the guards or
    the gate until their transactions are that old: then they arrive with their cohort."""
    ids, X, y = drifted
    cfg = HealerConfig(
        schedule=LABELS_ONLY,
        label_guard=LabelGuardConfig(on=False),
        settle_ms=1000.0,
        watch=WatchConfig(prior=False),
    )
    healer = Healer(covariate_bundle, Registry(MemoryStore(), covariate_bundle.id), cfg)
    healer.add_transactions(ids[:1000], X[:1000], event_times(1000))
    healer.open_episode(onset_rows=1000)
    healer.add_labels(ids[:400], y[:400].tolist(), sources=["analyst"] * 400)
    assert healer.ready() == "waiting for labels (0/100); healing before labels is off"
    assert healer.join.stats()["labels_settling"] == 400
    healer.add_transactions(ids[1000:1500], X[1000:1500], [1000.0 + t for t in event_times(500)])
    assert healer.join.stats()["labels_settling"] == 0 and healer.ready() is None
