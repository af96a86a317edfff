from __future__ import annotations

import numpy as np
import pytest

from shared.errors import RulesError
from shared.evaluation import CostMatrix, evaluate_scores
from shared.training import TrainConfig, build_bundle, split_validation, train_model


def test_split_is_stratified_and_disjoint():
    y = np.array([0] * 80 + [1] * 20, dtype=np.float32)
    tr, va = split_validation(100, y, 0.25, seed=0)
    assert len(set(tr) & set(va)) == 0 and len(tr) + len(va) == 100
    assert y[va].sum() == 5 and len(va) == 25


def test_training_learns_the_seed_signal(seed_scenario):
    s = seed_scenario
    model, losses = train_model(s.train.X, s.train.y, config=TrainConfig(epochs=5))
    assert losses[-1] < losses[0]
    m = evaluate_scores(s.clean_test.y, model.predict_proba(s.clean_test.X), 0.5, CostMatrix())
    assert m.accuracy > 0.9
    assert not model.reflexive.input_path.weight.any()  # kept out of training: zero until a heal


def test_training_is_reproducible(seed_scenario):
    s = seed_scenario
    a, _ = train_model(s.train.X[:500], s.train.y[:500], config=TrainConfig(epochs=2))
    b, _ = train_model(s.train.X[:500], s.train.y[:500], config=TrainConfig(epochs=2))
    np.testing.assert_array_equal(a.predict_proba(s.clean_test.X), b.predict_proba(s.clean_test.X))


def test_bundle_threshold_minimises_validation_cost(seed_scenario, seed_bundle):
    s = seed_scenario
    _, va = split_validation(len(s.train.y), s.train.y, 0.2, seed=42)
    y, p = s.train.y[va], seed_bundle.new_model().predict_proba(s.train.X[va])
    costs = seed_bundle.costs
    chosen = evaluate_scores(y, p, seed_bundle.threshold, costs).cost
    assert chosen == pytest.approx(seed_bundle.info["validation"]["cost"])
    for t in np.linspace(0.01, 0.99, 99):
        assert chosen <= evaluate_scores(y, p, t, costs).cost + 1e-12
    assert seed_bundle.threshold < 0.5  # a miss costs 10x a false alarm
    assert seed_bundle.info["rows"] == {"train": 4000, "validation": 1000}


def test_bad_rules_fail_before_training(seed_scenario):
    s = seed_scenario
    with pytest.raises(RulesError, match="rule 'x'"):
        build_bundle(s.train.X, s.train.y, s.features, "[[rule]]\nname='x'\nwhen='nope > 1'\n")


def test_a_cached_scenario_bundle_is_retrained_when_it_no_longer_reads_the_scenario(tmp_path):
    import shutil

    from shared.bundle import Bundle
    from shared.data import build
    from shared.training import scenario_bundle

    stale = scenario_bundle("covariate", tmp_path)  # a bundle left under another scenario's name
    shutil.copytree(stale, tmp_path / "payments")
    path = scenario_bundle("payments", tmp_path)
    assert Bundle.load(path).features == tuple(build("payments").features)
    written = {f.name: f.stat().st_mtime_ns for f in path.iterdir()}
    assert scenario_bundle("payments", tmp_path) == path  # now reused, not written again
    assert {f.name: f.stat().st_mtime_ns for f in path.iterdir()} == written
