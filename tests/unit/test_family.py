from __future__ import annotations

import json

import numpy as np
import pytest

from services.cli import main
from shared.data.family import KINDS, sample
from shared.errors import ConfigError


def test_a_seed_draws_the_same_problem_and_stream_every_time():
    a, b = sample(11, n_post=600), sample(11, n_post=600)
    assert a.params == b.params
    assert np.array_equal(a.scenario.stream.X, b.scenario.stream.X)
    assert np.array_equal(a.scenario.stream.y, b.scenario.stream.y)
    assert sample(12, n_post=600).params != a.params


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_draws_a_problem_within_its_ranges(kind):
    fs = sample(3, n_post=800, kind=kind)
    p, st = fs.params["problem"], fs.scenario.stream
    assert fs.kind == kind and fs.params["drift"]["kind"] == kind
    assert 8 <= p["features"] <= 40 and 0.005 <= p["fraud_rate"] <= 0.2 and 0 <= p["rho"] <= 0.6
    assert 3 <= len(p["informative"]) <= 10 and len(p["interactions"]) >= 1
    assert len(st) == 2800 and st.drift_at == (None if kind == "none" else 2000)
    assert np.all((st.posterior >= 0) & (st.posterior <= 1))
    json.dumps(fs.params)  # written beside the stream


def test_the_generator_posterior_matches_its_labels():
    """The Bayes posterior is the generator's: its mean is the fraud rate it draws."""
    for kind in ("prior", "cluster", "concept", "category"):
        st = sample(5, n_post=20_000, kind=kind).scenario.stream
        post = slice(2000, None)
        assert abs(float(st.posterior[post].mean()) - float(st.y[post].mean())) < 0.01, kind


def test_a_unit_change_moves_its_features_by_the_drawn_shift():
    fs = sample(4, n_post=20_000, kind="unit")
    d, X = fs.params["drift"], fs.scenario.stream.X
    for j, shift in zip(d["features"], d["shift_sd"], strict=True):
        before, after = X[:2000, j], X[2000:, j]
        moved = (after.mean() - before.mean()) / before.std()
        assert moved == pytest.approx(shift, abs=0.15)


def test_a_prior_shift_changes_the_fraud_rate_and_not_the_classes():
    fs = sample(8, n_post=40_000, kind="prior")
    st, want = fs.scenario.stream, fs.params["drift"]["fraud_rate"]
    assert float(st.y[2000:].mean()) == pytest.approx(want, rel=0.1)


def test_an_unknown_kind_is_refused():
    with pytest.raises(ConfigError, match="unknown drift kind"):
        sample(1, kind="earthquake")


def test_scenario_sample_writes_the_stream_and_its_parameters(tmp_path, capsys):
    assert main(["scenario", "sample", "--seed", "20", "--rows", "500", "--out", str(tmp_path)]) == 0
    params = json.loads((tmp_path / "params.json").read_text())
    assert params["seed"] == 20 and params["drift"]["kind"] == "unit"
    assert (tmp_path / "stream.csv").read_text().count("\n") == 2501
    assert "params.json" in capsys.readouterr().out


def test_a_drawn_stream_is_a_scenario_by_name_and_its_bundle_is_kept_per_length(tmp_path):
    from shared.data import build
    from shared.training import scenario_bundle

    named = build("family:9", n_pre=500, n_post=1500)
    drawn = sample(9, n_pre=500, n_post=1500).scenario
    assert np.array_equal(named.stream.X, drawn.stream.X, equal_nan=True) and named.name == "family-9"
    with pytest.raises(ConfigError, match="family:SEED"):
        build("family:nine")
    path = scenario_bundle("family:9", tmp_path, sc=named)
    assert path.name == "family-9-2000" and scenario_bundle("family:9", tmp_path, sc=named) == path
