"""The parts the healer is composed of, each on its own."""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from shared.errors import HealingError
from shared.healing.cycle import HealBatch, HealResult
from shared.healing.episodes import EpisodeTracker
from shared.healing.events import EpisodeClosed, EpisodeOpened, HealJob, HealOutcome, RolledBack
from shared.healing.gate import Verdict, VersusShadow
from shared.healing.healer import Healer, HealerConfig
from shared.healing.label_guard import LabelGuard, LabelGuardConfig
from shared.healing.ledger import AdapterLedger, Recorded
from shared.healing.live_check import LiveCheck
from shared.healing.own_watch import WatchConfig
from shared.healing.shadow_guard import ShadowGuard, ShadowGuardConfig
from shared.healing.worker import HealWorker, InlineExecutor
from shared.messages import Alert
from shared.registry import MemoryStore, Registry, RollbackPolicy


def alert(feature: str, state: str) -> Alert:
    return Alert(feature, feature, 1.0, 1.0, state, onset_rows=300)


def test_an_episode_opened_by_conflicts_alone_closes_when_they_recover() -> None:
    tracker = EpisodeTracker()
    assert tracker.update(alert("conflicts", "drift")) == "open"
    assert tracker.update(Alert("fidi", "V14", 0.4, 0.15, "drift")) is None  # a per-feature alert
    assert tracker.update(alert("conflicts", "recovered")) == "close"
    assert tracker.update(alert("fidi", "recovered")) is None  # a recovery of a detector that never alarmed


def test_the_episode_stays_open_while_any_detector_alarms() -> None:
    tracker = EpisodeTracker()
    changes = [tracker.update(alert(f, s)) for f, s in [("fidi", "drift"), ("conflicts", "drift")]]
    changes += [tracker.update(alert(f, s)) for f, s in [("fidi", "recovered"), ("conflicts", "recovered")]]
    assert changes == ["open", None, None, "close"]


def shadow_says(verdicts: dict[str, bool]):
    return verdicts.get


def test_the_label_guard_holds_chunks_and_judges_only_known_verdicts() -> None:
    guard = LabelGuard(chunk=4, min_known=3)
    assert guard.add([("a", 1.0), ("b", 0.0)], shadow_says({})) == [] and len(guard.held) == 2
    (judged,) = guard.add([("c", 1.0), ("d", 0.0)], shadow_says({"a": False}))  # 1 known of 4
    assert not judged.suspect and judged.labels == [
        ("a", 1.0, None),
        ("b", 0.0, None),
        ("c", 1.0, None),
        ("d", 0.0, None),
    ]
    assert judged.kappa != judged.kappa  # NaN: too few known verdicts to judge


def test_a_suspect_feed_pauses_healing_until_clean_chunks_follow() -> None:
    guard = LabelGuard(chunk=4, min_known=4, resume_chunks=2)
    shadow = shadow_says({k: k in "ac" for k in "abcdefgh"})
    flipped = [(k, 0.0 if k in "ac" else 1.0) for k in "abcd"]
    clean = [(k, 1.0 if k in "ac" else 0.0) for k in "abcd"]
    first, second = guard.add(flipped + flipped, shadow)
    assert first.suspect and first.first_suspect and second.suspect and not second.first_suspect
    assert guard.hold is not None and guard.quarantined == 8
    once, twice = guard.add(clean + clean, shadow)
    assert not once.trusted_again and twice.trusted_again and guard.hold is None


def test_a_hold_that_keeps_disagreeing_is_read_as_a_concept_change_and_a_burst_is_not() -> None:
    shadow = shadow_says({k: k in "ac" for k in "abcd"})
    flipped = [(k, 0.0 if k in "ac" else 1.0) for k in "abcd"]
    clean = [(k, 1.0 if k in "ac" else 0.0) for k in "abcd"]
    burst = LabelGuard(chunk=4, min_known=4, resume_chunks=2, concept_chunks=4)
    verdicts = burst.add(flipped * 2 + clean * 2 + flipped, shadow)
    assert [j.suspect for j in verdicts] == [True, True, False, False, True]  # a new hold, no concept
    assert not any(j.concept for j in verdicts) and not burst.concept
    change = LabelGuard(chunk=4, min_known=4, resume_chunks=2, concept_chunks=4)
    verdicts = change.add(flipped * 6, shadow)
    assert [j.suspect for j in verdicts] == [True, True, True, False, False, False]
    assert verdicts[3].concept and verdicts[3].trusted_again and change.concept and change.hold is None
    assert change.quarantined == 12  # the three chunks before the verdict (the healer keeps them)
    chance = [(k, 1.0) for k in "abcd"]  # kappa 0: no better than chance, as after a concept switch
    assert not any(j.trusted_again for j in change.add(chance * 4, shadow)) and change.concept
    back = change.add(clean * 4, shadow)  # the old concept is back: the mean of 4 clears 0.05 at once
    assert [j.trusted_again for j in back] == [True, False, False, False] and not change.concept
    assert change.add(flipped, shadow)[0].suspect  # and the guard judges again


def test_the_shadow_guard_needs_its_rows_judges_one_version_and_forgets_on_clear() -> None:
    guard = ShadowGuard(rows=10, min_rows=5, z=2.0)
    for _ in range(4):
        guard.add(1.0, version=2)
    guard.add(1.0, version=1)  # an older adapter's decision: no evidence about version 2
    assert guard.verdict(2) is None  # too few rows of version 2
    guard.add(1.0, version=2)
    assert "against the shadow's over 5 labelled rows" in (guard.verdict(2) or "")
    guard.clear()
    assert guard.n(2) == 0 and guard.verdict(2) is None


@pytest.fixture
def ready_healer(covariate_bundle, covariate_scenario) -> Healer:
    st = covariate_scenario.stream
    d = st.drift_at
    ids = [str(i) for i in st.ids[d : d + 600]]
    # the episode opens on FIDI's alert
    cfg = HealerConfig(label_guard=LabelGuardConfig(on=False), watch=WatchConfig(prior=False))
    healer = Healer(covariate_bundle, Registry(MemoryStore(), covariate_bundle.id), cfg)
    healer.add_transactions(ids, st.X[d : d + 600], [float(i) for i in range(600)])
    healer.on_alert(alert("fidi", "drift"))
    healer.add_labels(ids, st.y[d : d + 600].tolist())  # the episode's 300 hold its 20 frauds and more
    return healer


def test_inline_the_heal_finishes_in_the_step_that_starts_it(ready_healer: Healer) -> None:
    events = HealWorker(ready_healer, InlineExecutor()).step()
    assert isinstance(events[0], EpisodeOpened) and events[0].start == 300.0 and events[0].trigger == "fidi"
    assert isinstance(events[1], HealOutcome) and ready_healer.registry.n_heals == 1
    assert HealWorker(ready_healer).step() == []  # not due: no new transactions or labels since


def test_on_a_thread_the_loop_collects_the_heal_at_a_later_step(ready_healer: Healer) -> None:
    release = threading.Event()
    run = ready_healer.run

    def slow(job):  # the heal thread is still busy when the loop steps again
        release.wait(30)
        return run(job)

    ready_healer.run = slow  # type: ignore[method-assign]
    with ThreadPoolExecutor(1) as pool:
        worker = HealWorker(ready_healer, pool)
        first = worker.step()
        assert [type(e) for e in first] == [EpisodeOpened] and worker.running is not None
        assert worker.step() == []  # still running: nothing new starts
        release.set()
        assert [type(e) for e in worker.close()] == [HealOutcome] and worker.running is None
    ready_healer.close_episode("fidi")
    assert isinstance(ready_healer.drain_events()[0], EpisodeClosed)


def test_a_heal_whose_process_died_is_dropped_and_the_next_one_runs(ready_healer: Healer) -> None:
    run = ready_healer.run
    calls = []

    def dies_once(job):
        calls.append(job.number)
        if len(calls) == 1:
            raise HealingError("the heal process is gone: [Errno 32] Broken pipe")
        return run(job)

    ready_healer.run = dies_once  # type: ignore[method-assign]
    worker = HealWorker(ready_healer, InlineExecutor())
    first = worker.step()
    assert [type(e) for e in first] == [EpisodeOpened] and worker.running is None
    assert ready_healer.registry.n_heals == 0  # nothing recorded for the heal that died
    ready_healer.run = run  # type: ignore[method-assign]
    assert worker.close() == []


def test_each_adapter_keeps_its_own_shadow_window() -> None:
    guard = ShadowGuard(rows=5, min_rows=5, z=2.0)
    for _ in range(5):
        guard.add(1.0, version=2)
    for _ in range(50):  # another adapter's rows do not push version 2's out
        guard.add(0.0, version=3)
    assert guard.n(2) == 5 and guard.verdict(2) is not None and guard.verdict(3) is None


def test_a_live_adapter_re_scored_worse_than_the_shadow_goes_only_on_enough_rows_and_z() -> None:
    from shared.evaluation import CostMatrix

    check = LiveCheck(RollbackPolicy(), ShadowGuardConfig(min_rows=300, z=2.0), CostMatrix(), 100)

    def loses(rows: int, z: float) -> VersusShadow:
        return VersusShadow(rows=rows, cost_candidate=0.2, cost_shadow=0.1, logloss_shadow=0.1, gain_z=-z)

    check.rescored(loses(299, 5.0), 4)  # too few rows
    check.rescored(loses(1000, 1.9), 4)  # not clear enough
    check.rescored(loses(1000, 5.0), 0)  # the bundle's adapter is the shadow
    assert check.verdict(4) is None
    check.rescored(loses(1000, 2.0), 4)
    assert check.verdict(5) is None  # another adapter went live meanwhile: no verdict on it
    check.rescored(loses(1000, 2.0), 4)
    verdict = check.verdict(4)
    assert verdict is not None and verdict.to_bundle and "re-scored on 1000 arrived labels" in verdict.reason
    assert check.paused is None and check.verdict(4) is None  # healing goes on; judged once


def test_a_live_adapter_that_loses_to_the_shadow_on_arrived_labels_goes_back_to_the_bundles(
    ready_healer: Healer,
) -> None:
    """Its own decisions' labels are 20,000 transactions away; the labels that have arrived,
    re-scored, show it now."""
    import torch

    healer = ready_healer
    flags_nothing = dict(healer.adapter) | {"logit_offset": torch.tensor(-30.0)}
    healer.ledger.roll_back(flags_nothing, 5, "a calibration that misses every fraud")
    job = healer.prepare()
    assert job is not None and job.version == 5
    result = healer.run(job)
    assert result.evidence is not None and (live := result.evidence.live) is not None
    assert live.rows >= 300 and live.cost_candidate > live.cost_shadow and live.gain_z < -2.0
    healer.finish(job, dataclasses.replace(result, accepted=False, verdict=Verdict.NO_GAIN))
    rolled = healer.check_rollback()
    assert isinstance(rolled, RolledBack) and rolled.from_version == 5 and healer.version == 0
    assert "the live adapter costs" in rolled.reason and healer.check.paused is None


def test_a_heal_that_started_before_a_rollback_does_not_go_live_after_it(ready_healer: Healer) -> None:
    healer = ready_healer
    job = healer.prepare()
    assert job is not None and job.version == 0
    healer.ledger.roll_back(healer.adapter, 7, "an operator's rollback")
    result = dataclasses.replace(healer.run(job), accepted=True)  # a candidate the gate took
    outcome = healer.finish(job, result)
    assert not outcome.accepted and outcome.result.reason.startswith("superseded: v0 was replaced by v7")
    assert outcome.result.verdict is Verdict.SUPERSEDED
    assert healer.version == 7 and not outcome.post.accepted


def test_the_ledger_records_every_heal_puts_accepted_ones_live_and_resumes(covariate_bundle) -> None:
    b = covariate_bundle
    registry = Registry(MemoryStore(), b.id)
    ledger = AdapterLedger(registry, b.adapter_state)
    batch = HealBatch(np.zeros((1, len(b.features)), np.float32), np.zeros(1, np.float32))

    def heal(number: int, accepted: bool, f1: float) -> Recorded:
        job = HealJob(number, b.new_model(ledger.adapter), batch, ledger.version)
        verdict = Verdict.ACCEPTED if accepted else Verdict.NO_GAIN
        result = HealResult(b.adapter_state, accepted, "", verdict=verdict)
        return ledger.record_heal(job, result, {}, {"f1": f1})

    refused = heal(1, False, 0.9)
    assert ledger.version == 0 and refused.pre.kind == "pre" and not refused.post.accepted
    first, second = heal(2, True, 0.5), heal(3, True, 0.7)
    assert ledger.live is second.post and second.post.parent == first.post.version
    assert ledger.best_post_heal(0) is second.post  # refused posts never count
    assert ledger.best_post_heal(0, before=second.post.seq) is first.post
    ledger.roll_back(first.post.adapter, first.post.version, "live quality degraded")
    resumed = AdapterLedger(registry, {})
    assert resumed.version == ledger.version == first.post.version and resumed.live.kind == "rollback"
