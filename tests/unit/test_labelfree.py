"""Label-free healing: the diagnosis on each kind of drift, the adapter's calibration, the
healer's confirmation and reset, and the heal process running a label-free job."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch

from shared.data import build
from shared.errors import HealingError
from shared.healing.before_labels import Diagnosed
from shared.healing.cycle import HealBatch
from shared.healing.events import EpisodeClosed, HealJob, HealOutcome, RolledBack
from shared.healing.healer import Healer, HealerConfig
from shared.healing.own_watch import WatchConfig
from shared.healing.process import HealProcess
from shared.healing.types import HealKind
from shared.labelfree import LabelFreeReference, diagnose, label_free_cycle
from shared.labelfree.diagnosis import DiagnosisConfig
from shared.labelfree.prior import em_miss
from shared.model import adapter_from_bytes, adapter_to_bytes
from shared.registry import MemoryStore, Registry
from shared.scoring import ScoringCore
from shared.training import build_bundle


@pytest.fixture(scope="module")
def ref(covariate_bundle):
    return LabelFreeReference(covariate_bundle)


def after_drift(name: str, rows: int = 2000, skip: int = 500) -> np.ndarray:
    st = build(name, n_post=rows + skip).stream
    d = st.drift_at if st.drift_at is not None else 2000
    return st.X[d + skip : d + skip + rows]


def test_a_unit_change_is_recalibrated_on_the_features_that_moved(ref):
    dg = diagnose(ref, after_drift("covariate"))
    assert dg.action == "recalibrate", dg.reason
    moved = {s.feature: s for s in dg.shifted}
    assert set(moved) == {"amount", "V4", "V12", "V14"}  # the scenario's recalibration, nothing else
    assert moved["V12"].scale == pytest.approx(1.5, abs=0.1) and moved["V4"].shift == pytest.approx(
        0.8, abs=0.15
    )
    assert dg.offset == 0.0


def test_a_fraud_rate_surge_is_a_prior_shift_and_nothing_else(ref):
    dg = diagnose(ref, after_drift("surge"))
    assert dg.action == "prior" and dg.shifted == ()
    assert dg.prior_em == pytest.approx(0.40, abs=0.05) and dg.offset > 0.5
    rates = sorted(r for r in (dg.prior_features, dg.prior_em, dg.prior_bbse) if r is not None)
    assert len(rates) == 3 and dg.prior == pytest.approx(rates[1])  # the median of the three acts


def test_a_fraud_rate_offset_moves_the_decision_where_the_validation_rows_cost_least(ref):
    """The offset for a rate is relative to the optimum at the training rate (none there),
    grows with the rate, and at that rate the reweighted validation rows cost less than at
    the bundle's own threshold."""
    assert ref.prior_offset(ref.prior0) == 0.0
    offsets = [ref.prior_offset(r) for r in (0.05, 0.1, 0.3, 0.4)]
    assert offsets == sorted(offsets) and offsets[0] < 0 < offsets[-1]
    z, pos = ref.validation
    costs = ref.costs

    def cost(rate: float, offset: float) -> float:
        flag = z + offset >= ref.threshold_logit
        fnr, fpr = 1 - flag[pos].mean(), flag[~pos].mean()
        return float(rate * fnr * costs.fn + (1 - rate) * fpr * costs.fp)

    assert cost(0.4, ref.prior_offset(0.4)) < cost(0.4, 0.0)


def test_em_is_asked_only_where_it_finds_known_fraud_rates(ref):
    rng = np.random.default_rng(0)
    y = rng.random(3000) < 0.02
    calibrated = 2 * rng.normal(np.where(y, 1.0, -1.0), 1.0) + np.log(0.02 / 0.98)
    assert abs(em_miss(calibrated, y)) < 0.5 and abs(em_miss(20 * calibrated, y)) < 0.5  # Platt undoes x20
    cut = np.where(rng.random(3000) < 0.5, 40 * np.sign(calibrated + 3), calibrated)  # half saturated wrongly
    assert abs(em_miss(cut, y)) > 1.0
    assert abs(ref.scores.em_error) < DiagnosisConfig().em_max_miss  # the library's bundle: EM is asked


def test_a_new_pattern_is_unexplained_and_a_calm_stream_needs_nothing(ref):
    new = diagnose(ref, after_drift("new-pattern"))
    assert new.action == "unexplained" and [f for f, _ in new.unexplained] == ["V3"]
    assert diagnose(ref, after_drift("control")).action == "nothing"
    assert diagnose(ref, after_drift("covariate")[:100]).action == "nothing"  # too few rows


def test_a_change_in_one_class_is_unexplained(seed_bundle):
    dg = diagnose(LabelFreeReference(seed_bundle), after_drift("seed"))
    assert dg.action == "unexplained" and dg.unexplained[0][0] == "V14"


def test_the_candidate_undoes_the_unit_change_and_passes_the_gate(covariate_bundle, ref):
    X = after_drift("covariate")
    model = covariate_bundle.new_model()
    result = label_free_cycle(model, X, ref, covariate_bundle.threshold, covariate_bundle.costs)
    assert result.accepted, result.reason
    m = result.metrics
    assert m["estimated_cost_after"] < m["estimated_cost_before"]
    assert result.diagnosis is not None and result.diagnosis["action"] == "recalibrate"
    cand = model.new_adapter(result.adapter)
    assert cand.calibrated and float(cand.logit_offset) == 0.0
    # the same candidate again, from the adapter it would replace: nothing to change
    again = label_free_cycle(
        covariate_bundle.new_model(result.adapter), X, ref, covariate_bundle.threshold, covariate_bundle.costs
    )
    assert not again.accepted and again.reason.startswith("unchanged")


def test_a_calibrated_adapter_travels_as_bytes_and_old_adapters_still_load(covariate_bundle):
    state = covariate_bundle.new_model().adapter_state()
    state["input_scale"][0], state["input_shift"][0], state["logit_offset"] = 1.35, 0.5, torch.tensor(0.7)
    back, _ = adapter_from_bytes(adapter_to_bytes(state, {}), covariate_bundle.config)
    assert float(back["input_scale"][0]) == pytest.approx(1.35) and float(
        back["logit_offset"]
    ) == pytest.approx(0.7)
    old = {k: v for k, v in state.items() if k not in ("input_scale", "input_shift", "logit_offset")}
    back, _ = adapter_from_bytes(adapter_to_bytes(old, {}), covariate_bundle.config)
    assert bool((back["input_scale"] == 1).all()) and float(back["logit_offset"]) == 0.0


def test_the_scorer_calibrates_the_live_adapter_only(covariate_bundle):
    core = ScoringCore(covariate_bundle)
    X = after_drift("covariate", 300)
    _, shadow_before = core.score(X)
    state = core.model.adapter_state()
    state["logit_offset"] = torch.tensor(2.0)
    state["input_shift"][8] = -1.0  # V14 one unit lower today
    core.offer(state, 1)
    core.swap_if_pending()
    live, shadow = core.score(X)
    np.testing.assert_array_equal(shadow, shadow_before)
    model = covariate_bundle.new_model(state)
    np.testing.assert_allclose(live, model.predict_proba(X), rtol=1e-5)


def feed(healer: Healer, X: np.ndarray, start: int = 0) -> None:
    ids = [f"t{start + i}" for i in range(len(X))]
    healer.add_transactions(ids, X, [float(start + i) for i in range(len(X))])


def test_a_label_free_heal_goes_live_once_confirmed_and_is_reset_when_it_no_longer_fits(covariate_bundle):
    healer = Healer(covariate_bundle, Registry(MemoryStore(), covariate_bundle.id), HealerConfig())
    X = after_drift("covariate", 3000)
    feed(healer, X[:1200])
    healer.open_episode(onset_rows=1200)
    job = healer.prepare()
    assert job is not None and job.kind == "label_free" and np.isnan(job.batch.y).all()
    first = healer.conclude(job, healer.run(job))
    assert [type(e) for e in first] == [Diagnosed] and healer.version == 0  # not confirmed yet
    feed(healer, X[1200:1500], 1200)
    job = healer.prepare()
    assert job is not None
    second = healer.conclude(job, healer.run(job))
    # confirmed: it goes live (a Diagnosed event first if the action's name changed, e.g. the
    # fraud rate's estimate crossed its margin between the two cycles)
    assert type(second[-1]) is HealOutcome and healer.version == 1
    assert all(isinstance(e, Diagnosed) for e in second[:-1])
    assert healer.labels_at_first_heal == 0 and healer.registry.snapshots()[-1].note.startswith("recalibrate")
    # the drift turns into something no unit change explains: two verdicts, then the reset
    odd = X[1500:].copy()
    odd[: len(odd) // 2, 3] += 3.0  # a bump on V3 in half the rows
    feed(healer, odd, 1500)
    events = cycles(healer)
    assert isinstance(events[-1], RolledBack) and healer.version == 0
    first_verdict = events[0]
    assert isinstance(first_verdict, Diagnosed) and first_verdict.to_alert().state == "unexplained"


def test_the_heal_process_runs_a_label_free_job(covariate_bundle):
    X = after_drift("covariate")
    batch = HealBatch(X, np.full(len(X), np.nan, np.float32))
    job = HealJob(1, covariate_bundle.new_model(), batch, 0, HealKind.LABEL_FREE)
    pool = HealProcess(covariate_bundle, Healer(covariate_bundle, Registry(MemoryStore(), "x")).cfg.heal)
    try:
        result = pool.submit(Healer.run, job).result(timeout=120)
    finally:
        pool.shutdown()
    assert result.accepted and result.diagnosis is not None and result.diagnosis["action"] == "recalibrate"


def test_a_stop_waits_for_a_heal_in_progress_but_not_for_an_idle_heal_process(covariate_bundle):
    import time

    X = after_drift("covariate")
    job = HealJob(1, covariate_bundle.new_model(), HealBatch(X, np.full(len(X), np.nan, np.float32)), 0)
    job = HealJob(1, covariate_bundle.new_model(), job.batch, 0, HealKind.LABEL_FREE)
    cfg = Healer(covariate_bundle, Registry(MemoryStore(), "x")).cfg.heal
    busy = HealProcess(covariate_bundle, cfg)
    future = busy.submit(Healer.run, job)
    deadline = time.monotonic() + 120
    while not busy.job_in_flight and not future.done() and time.monotonic() < deadline:
        time.sleep(0.01)  # until the child has the job (after its warm-up)
    busy.shutdown()  # a heal in progress: its result is recorded before the stop
    assert future.result(timeout=0).accepted
    with pytest.raises(HealingError, match="shut down"):  # and no child is started again
        busy.submit(Healer.run, job).result(timeout=10)
    idle = HealProcess(covariate_bundle, cfg)  # still warming up, no job: nothing to wait for
    t = time.monotonic()
    idle.shutdown()
    assert time.monotonic() - t < 5


def test_a_bundle_without_reference_rows_says_why_it_cannot_heal_before_labels(covariate_scenario):
    s = covariate_scenario
    bundle = build_bundle(s.train.X, s.train.y, s.features, s.rules_toml, label="Class")
    bundle.reference_rows = None
    healer = Healer(bundle, Registry(MemoryStore(), bundle.id))
    feed(healer, after_drift("covariate", 1200))
    healer.open_episode(onset_rows=1200)
    assert "no reference rows" in (healer.ready() or "")


def cycles(healer: Healer, n: int = 2) -> list[Any]:
    """``n`` label-free cycles, each concluded; their events."""
    events = []
    for _ in range(n):
        job = healer.prepare()
        assert job is not None
        events += healer.conclude(job, healer.run(job))
    return events


def calibrated(bundle) -> Healer:
    """A healer whose label-free calibration of the covariate drift is live (v1), in an
    episode opened by hand (the frozen posteriors' own detector off: it would open and close
    the episode itself)."""
    healer = Healer(bundle, Registry(MemoryStore(), bundle.id), HealerConfig(watch=WatchConfig(prior=False)))
    feed(healer, after_drift("covariate", 1500))
    healer.open_episode(onset_rows=1500)
    cycles(healer)
    assert healer.version == 1
    return healer


def test_a_label_free_adapter_is_reset_when_its_drift_is_over(covariate_bundle):
    healer = calibrated(covariate_bundle)
    healer.drain_events()
    healer.close_episode()
    closed, reset = healer.drain_events()
    assert isinstance(closed, EpisodeClosed) and isinstance(reset, RolledBack)
    assert healer.version == 0 and "drift is over" in reset.reason


def test_a_label_free_adapter_is_reset_once_upstream_fixes_what_it_corrected(covariate_bundle):
    """The unit change is undone upstream while the episode is still open: the diagnosis
    finds nothing shifted any more, and the calibration (which would now move correct
    rows) is withdrawn after two such verdicts."""
    healer = calibrated(covariate_bundle)
    clean = build("covariate", n_post=10).stream.X[:2000]  # the training regime again
    feed(healer, clean, 1500)
    events = cycles(healer)
    assert isinstance(events[-1], RolledBack) and healer.version == 0
    assert "back at the reference" in events[-1].reason


def test_without_labels_the_flag_rate_may_move_back_towards_the_validation_rate():
    """A drift that silenced the model (it flags nothing) may be undone without labels: the
    candidate's flag rate is bounded by the live one's and the validation rows' alike."""
    from shared.healing.gate import Verdict
    from shared.labelfree.cycle import LabelFreeConfig, LabelFreeEvidence, _decide

    ev = LabelFreeEvidence(
        estimated_cost_before=0.05,
        estimated_cost_after=0.03,
        pos_rate_before=0.0005,
        pos_rate_after=0.012,
        pos_rate_expected=0.011,
        pos_rate_reference=0.01,
        fraud_rate_estimate=0.01,
        fraud_rate_reference=0.01,
        n_rows=2000,
    )
    assert _decide(ev, LabelFreeConfig()).verdict is Verdict.ACCEPTED
    more = replace(ev, pos_rate_after=0.05, pos_rate_expected=0.045)
    d = _decide(more, LabelFreeConfig())
    assert d.verdict is Verdict.RATE_MOVED and not d.accepted and "may not move" in d.reason
    # the same flag rate, where the diagnosis says fraud went up fourfold: four times the bound
    assert _decide(replace(more, fraud_rate_estimate=0.04), LabelFreeConfig()).accepted
    unflagged = replace(ev, rule_flagged=(0.5, 0.8))  # the rules' rows flagged: 0.5, validation 0.8
    assert _decide(unflagged, LabelFreeConfig()).verdict is Verdict.RULES_UNFLAGGED
    m = unflagged.as_metrics()
    assert m["rule_flagged_after"] == 0.5 and m["rule_flagged_reference"] == 0.8 and m["n_rows"] == 2000.0
    assert "rule_flagged_after" not in ev.as_metrics()
