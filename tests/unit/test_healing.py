from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from shared.data import build
from shared.evaluation import evaluate_scores
from shared.healing import HealBatch, HealConfig, composite_loss, heal_cycle
from shared.healing.cycle import bayes_shift
from shared.healing.loss import LossWeights


def drifted_batch(scenario, n=2000, labelled=True):
    st = scenario.stream
    d = st.drift_at
    X, y = st.X[d : d + n], st.y[d : d + n].copy()
    if not labelled:
        y[:] = np.nan
    return HealBatch(X, y)


def test_backbone_and_head_are_bit_identical_after_healing(covariate_bundle, covariate_scenario):
    model = covariate_bundle.new_model()
    base_before = {k: v.clone() for k, v in model.base_state().items()}
    adapter_before = model.adapter_state()
    result = heal_cycle(
        model,
        drifted_batch(covariate_scenario),
        covariate_bundle.rules,
        covariate_bundle.threshold,
        covariate_bundle.costs,
    )
    model.load_adapter(result.adapter)
    for k, v in model.base_state().items():
        assert torch.equal(v, base_before[k]), k
    assert all(p.grad is None for p in model.base_parameters())
    assert not torch.equal(result.adapter["adapter.0.weight"], adapter_before["adapter.0.weight"])


def test_the_live_model_is_not_touched_by_a_cycle(covariate_bundle, covariate_scenario):
    model = covariate_bundle.new_model()
    before = model.adapter_state()
    heal_cycle(
        model,
        drifted_batch(covariate_scenario),
        covariate_bundle.rules,
        covariate_bundle.threshold,
        covariate_bundle.costs,
    )
    for k, v in model.adapter_state().items():
        assert torch.equal(v, before[k])


def test_labelled_heal_on_covariate_drift_lowers_cost_and_passes_the_gate(
    covariate_bundle, covariate_scenario
):
    b, st = covariate_bundle, covariate_scenario.stream
    model = b.new_model()
    result = heal_cycle(model, drifted_batch(covariate_scenario), b.rules, b.threshold, b.costs)
    assert result.accepted, result.reason
    assert result.metrics["holdout_cost_after"] < result.metrics["holdout_cost_before"]
    assert result.metrics["n_holdout"] == 600  # newest 30% of 2,000 labels
    test = slice(st.drift_at + 4000, None)  # rows the cycle never saw
    before = evaluate_scores(st.y[test], model.predict_proba(st.X[test]), b.threshold, b.costs).cost
    model.load_adapter(result.adapter)
    after = evaluate_scores(st.y[test], model.predict_proba(st.X[test]), b.threshold, b.costs).cost
    assert after < 0.9 * before


def test_rows_without_arrived_labels_add_no_labelled_loss(covariate_bundle, covariate_scenario):
    b = covariate_bundle
    result = heal_cycle(
        b.new_model(), drifted_batch(covariate_scenario, labelled=False), b.rules, b.threshold, b.costs
    )
    assert result.terms["label"] == 0.0
    assert result.terms["rule"] > 0.0  # the rule still speaks
    assert result.metrics["n_labelled"] == 0 and "holdout_cost_after" not in result.metrics


def test_no_evidence_means_no_heal(covariate_bundle, covariate_scenario):
    b = covariate_bundle
    X = covariate_scenario.stream.X[:50]
    X = X[~b.rules.fires(X).any(axis=1)]
    result = heal_cycle(
        b.new_model(), HealBatch(X, np.full(len(X), np.nan, dtype=np.float32)), b.rules, b.threshold, b.costs
    )
    assert not result.accepted and result.reason.startswith("no evidence")


def test_a_candidate_that_flags_no_fraud_is_refused_as_collapse(covariate_bundle, covariate_scenario):
    b = covariate_bundle
    cfg = HealConfig(steps=60, lr=0.05, pos_weight=1e-3, gate=False, refit_offset=False)
    result = heal_cycle(b.new_model(), drifted_batch(covariate_scenario), b.rules, b.threshold, b.costs, cfg)
    assert result.metrics["pos_rate_after"] < cfg.collapse_rate
    assert not result.accepted and result.reason.startswith("collapse")


def test_a_candidate_that_flags_everything_is_refused_as_collapse(covariate_bundle, covariate_scenario):
    """A label feed that calls nearly everything fraud, the normals it leaves outweighed
    10,000 to 1 (with the adapter's input path a heal separates the true classes, so the
    class weight alone no longer makes it flag all)."""
    b = covariate_bundle
    cfg = HealConfig(steps=60, lr=0.05, pos_weight=1e4, gate=False, refit_offset=False)
    batch = drifted_batch(covariate_scenario)
    y = np.ones_like(batch.y)
    y[np.flatnonzero(batch.y == 0)[:40]] = 0.0  # 2% normals: the evidence still shows them
    batch = HealBatch(batch.X, y)
    result = heal_cycle(b.new_model(), batch, b.rules, b.threshold, b.costs, cfg)
    assert result.metrics["pos_rate_after"] > 1 - cfg.collapse_rate
    assert not result.accepted and result.reason.startswith("collapse: the candidate flags everything")


def test_a_diverging_heal_is_refused_and_leaves_a_finite_adapter(covariate_bundle, covariate_scenario):
    b = covariate_bundle
    model = b.new_model()
    before = model.adapter_state()
    cfg = HealConfig(steps=5, lr=1e30, gate=False)  # accept anything finite: only the guard stands
    result = heal_cycle(model, drifted_batch(covariate_scenario), b.rules, b.threshold, b.costs, cfg)
    assert not result.accepted and "non-finite" in result.reason
    assert all(torch.equal(result.adapter[k], before[k]) for k in before)


def test_a_non_finite_adapter_is_never_serialised(covariate_bundle):
    from shared.errors import WeightsError
    from shared.messages.adapters import encode_adapter

    state = {k: v.clone() for k, v in covariate_bundle.adapter_state.items()}
    state["scale"] = torch.tensor(float("inf"))
    with pytest.raises(WeightsError, match="NaN or infinite"):
        encode_adapter(state, covariate_bundle.id, 1, 0)


def test_the_entropy_term_is_capped():
    logits = torch.zeros(10, requires_grad=True)  # maximal entropy, ln 2
    y = torch.tensor([0.0, 1.0] + [float("nan")] * 8)
    none = torch.zeros(10)
    _, terms = composite_loss(logits, y, none, none, LossWeights(label=1.0, rule=0.0, entropy=10.0))
    assert terms["entropy_weight"] * terms["entropy"] == pytest.approx(0.5 * terms["total"])
    nan_y = torch.full((10,), float("nan"))
    _, terms = composite_loss(logits, nan_y, none, none, LossWeights(label=1.0, rule=1.0, entropy=0.5))
    assert terms["entropy_weight"] == 0.0 and terms["total"] == 0.0  # entropy alone never heals


@pytest.mark.parametrize("how", ["shift_logit", "logit_offset"])
def test_both_offsets_move_every_logit_by_the_same_amount(covariate_bundle, covariate_scenario, how):
    model = covariate_bundle.new_model()
    X = torch.as_tensor(covariate_scenario.stream.X[:200])
    layer = model.new_adapter()
    with torch.no_grad():
        before = model.logits(X, layer)
        if how == "shift_logit":
            model.shift_logit(layer, 1.25)
        else:
            layer.logit_offset.add_(1.25)
        after = model.logits(X, layer)
    assert torch.allclose(after - before, torch.full_like(before, 1.25), atol=1e-4)


def test_the_offset_refit_corrects_a_fraud_rate_surge(covariate_bundle):
    sc = build("surge")
    st = sc.stream
    assert st.drift_at is not None
    rows = slice(st.drift_at, st.drift_at + 1500)
    batch = HealBatch(st.X[rows], st.y[rows].astype(np.float32))
    b = covariate_bundle
    one_step = HealConfig(gate=False, steps=1, converge=False)  # the refit alone moves the prior
    on = heal_cycle(b.new_model(), batch, b.rules, b.threshold, b.costs, one_step)
    off = heal_cycle(
        b.new_model(), batch, b.rules, b.threshold, b.costs, replace(one_step, refit_offset=False)
    )
    assert on.terms["logit_offset"] > 0.3  # 15% -> 40% fraud: the log-odds rise
    assert on.metrics["holdout_logloss_after"] < off.metrics["holdout_logloss_after"]


def test_a_heal_with_enough_labels_trains_to_convergence_and_keeps_its_best_state(
    covariate_bundle, covariate_scenario
):
    b = covariate_bundle
    batch = drifted_batch(covariate_scenario)
    cfg = HealConfig(gate=False)
    converged = heal_cycle(b.new_model(), batch, b.rules, b.threshold, b.costs, cfg)
    fixed = heal_cycle(b.new_model(), batch, b.rules, b.threshold, b.costs, replace(cfg, converge=False))
    assert fixed.terms["steps"] == cfg.steps
    assert cfg.steps + cfg.check_every * cfg.patience <= converged.terms["steps"] <= cfg.max_steps
    assert converged.adapter["input_path.weight"].any()  # the heal moved the inputs' path
    few = HealBatch(batch.X, np.where(np.arange(len(batch.y)) < 100, batch.y, np.nan).astype(np.float32))
    assert heal_cycle(b.new_model(), few, b.rules, b.threshold, b.costs, cfg).terms["steps"] == cfg.steps


def test_class_balanced_training_is_recalibrated_by_the_offset_refit(covariate_bundle, covariate_scenario):
    b = covariate_bundle
    batch = drifted_batch(covariate_scenario)
    cfg = HealConfig(gate=False, class_balance=True)
    r = heal_cycle(b.new_model(), batch, b.rules, b.threshold, b.costs, cfg)
    model = b.new_model()
    model.load_adapter(r.adapter)
    with torch.no_grad():
        p = torch.sigmoid(model.logits(torch.as_tensor(batch.X))).numpy()
    assert r.terms["logit_offset"] < -0.5  # trained as if half were fraud, then moved back
    assert abs(p.mean() - batch.y.mean()) < 0.03  # calibrated to the arrived fraud rate again
    plain = replace(cfg, class_balance=False)
    unbalanced = heal_cycle(b.new_model(), batch, b.rules, b.threshold, b.costs, plain)
    assert abs(unbalanced.terms["logit_offset"]) < abs(r.terms["logit_offset"])


def test_cross_folds_judge_the_shadow_on_every_arrived_label(covariate_bundle, covariate_scenario):
    b = covariate_bundle
    batch = drifted_batch(covariate_scenario, n=1000)
    cfg = HealConfig(converge=False, cross_folds=1)
    args = (b.new_model(), batch, b.rules, b.threshold, b.costs)
    held_out = heal_cycle(*args, cfg, shadow=b.adapter_state)
    crossed = heal_cycle(*args, replace(cfg, cross_folds=3), shadow=b.adapter_state)
    assert held_out.metrics["shadow_evidence_rows"] == held_out.metrics["n_holdout"] == 300
    assert crossed.metrics["shadow_evidence_rows"] == 1000  # every label, each out of its fold
    assert crossed.metrics["holdout_cost_gain_z_shadow"] > held_out.metrics["holdout_cost_gain_z_shadow"] > 0


def test_a_calibrated_candidate_decides_at_the_bayes_threshold_whatever_the_bundles(
    covariate_bundle, covariate_scenario
):
    """A bundle's threshold is chosen for its frozen model's scale; a labelled heal's
    candidate is calibrated, so the shift puts the Bayes threshold of its probabilities
    where the bundle's threshold is, and its decisions cost less than at the bundle's."""
    b, batch = covariate_bundle, drifted_batch(covariate_scenario)
    off_scale = 0.9  # a threshold far above Bayes (1/11 at fp=1, fn=10)
    cfg = HealConfig(gate=False)
    shifted = heal_cycle(b.new_model(), batch, b.rules, off_scale, b.costs, cfg)
    plain = heal_cycle(b.new_model(), batch, b.rules, off_scale, b.costs, replace(cfg, bayes_decisions=False))
    assert shifted.terms["decision_shift"] == pytest.approx(bayes_shift(off_scale, b.costs, cfg), abs=1e-6)
    assert plain.terms["decision_shift"] == 0.0
    model = b.new_model(shifted.adapter)
    with torch.no_grad():
        z = model.logits(torch.as_tensor(batch.X)).numpy()
    own = 1 / (1 + np.exp(-(z - shifted.terms["decision_shift"])))
    assert ((1 / (1 + np.exp(-z)) >= off_scale) == (own >= b.costs.bayes_threshold)).all()
    assert shifted.evidence is not None and plain.evidence is not None
    assert shifted.evidence.held_out is not None and plain.evidence.held_out is not None
    assert shifted.evidence.held_out.cost_after < plain.evidence.held_out.cost_after


def test_log_loss_is_judged_on_probabilities_not_on_the_decision_scale(covariate_bundle, covariate_scenario):
    """Healing again from a shifted live adapter, the gate reads that adapter's own
    probabilities: on the same held-out rows, its log loss is what it was as a candidate."""
    b, batch = covariate_bundle, drifted_batch(covariate_scenario)
    cfg = HealConfig(gate=False)
    first = heal_cycle(b.new_model(), batch, b.rules, 0.9, b.costs, cfg)
    again = heal_cycle(b.new_model(first.adapter), batch, b.rules, 0.9, b.costs, cfg)
    assert first.terms["decision_shift"] != 0.0
    assert first.evidence is not None and again.evidence is not None
    assert first.evidence.held_out is not None and again.evidence.held_out is not None
    as_candidate = first.evidence.held_out.logloss_after
    assert again.evidence.held_out.logloss_before == pytest.approx(as_candidate, rel=1e-5)
