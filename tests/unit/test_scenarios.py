from __future__ import annotations

import numpy as np
import pytest

from shared.data import build, names
from shared.data.tables import load_table
from shared.errors import ConfigError, DataError
from shared.rules import RuleSet


def test_seed_matches_the_published_facts(seed_scenario):
    s = seed_scenario
    assert s.train.X.shape == (5000, 10) and s.clean_test.X.shape == (1000, 10)
    assert s.drift_test is not None and s.drift_test.X.shape == (1000, 10)
    assert int(s.train.y.sum()) == 750  # 15% fraud
    v14 = s.train.X[:, 7].astype(np.float64)
    assert round(float(v14.mean()), 3) == -0.363
    assert round(float(v14.std()), 3) == 1.323
    assert round(float((s.clean_test.X[:, 7] < -1.5).mean()), 3) == 0.188
    assert round(float((s.drift_test.X[:, 7] < -1.5).mean()), 3) == 0.774
    assert len(s.seed_batches) == 25 and all(len(b) == 100 for b in s.seed_batches)


def test_seed_drift_moves_only_normal_v14(seed_scenario):
    d = seed_scenario.drift_test
    assert d is not None
    normal = d.y == 0
    assert d.X[normal, 7].mean() == pytest.approx(-2.2, abs=0.1)
    assert d.X[~normal, 7].mean() == pytest.approx(-2.5, abs=0.15)
    assert abs(d.X[:, [0, 1, 2, 3, 4, 5, 6, 8, 9]].mean()) < 0.05


@pytest.mark.parametrize("name", names())
def test_every_scenario_is_a_stream_with_a_known_drift_point(name):
    s = build(name, n_pre=500, n_post=1500)
    st = s.stream
    assert len(st) == 2000 and st.X.shape == (2000, len(s.features))
    assert len(set(st.ids.tolist())) == 2000
    assert st.drift_at == (None if name == "control" else 500)
    assert ((st.posterior >= 0) & (st.posterior <= 1)).all()
    assert set(np.unique(st.y)) == {0.0, 1.0}


def test_scenarios_are_deterministic_per_seed():
    a, b, c = build("covariate", seed=1), build("covariate", seed=1), build("covariate", seed=2)
    np.testing.assert_array_equal(a.stream.X, b.stream.X)
    assert not np.array_equal(a.stream.X, c.stream.X)


def test_drifts_do_what_they_say():
    cov = build("covariate").stream
    v14 = 8
    assert cov.X[cov.drift_at :, v14].mean() < cov.X[: cov.drift_at, v14].mean() - 0.8
    surge = build("surge").stream
    assert surge.y[surge.drift_at :].mean() == pytest.approx(0.40, abs=0.02)
    assert surge.y[: surge.drift_at].mean() == pytest.approx(0.15, abs=0.02)
    new = build("new-pattern")
    post = new.stream.X[new.stream.drift_at :]
    fraud = new.stream.y[new.stream.drift_at :] == 1
    assert (post[fraud, 3] > 2.2).mean() > 0.35  # half of fraud spikes V3
    assert "v3_spike" in new.rules_toml
    gradual = build("gradual").stream
    d = gradual.drift_at
    assert d is not None
    assert abs(gradual.X[d : d + 500, v14].mean()) < abs(gradual.X[-2000:, v14].mean())


def test_bayes_posterior_beats_chance():
    st = build("covariate").stream
    post = st.posterior
    assert post[st.y == 1].mean() > post[st.y == 0].mean() + 0.4


def test_export_writes_tables_a_user_can_train_on(tmp_path):
    s = build("control", n_pre=100, n_post=200)
    out = s.write_csv(tmp_path / "control")
    assert {p.name for p in out.iterdir()} == {
        "train.csv",
        "test.csv",
        "stream.csv",
        "rules.toml",
        "scenario.json",
    }
    table = load_table(out / "train.csv", "Class")
    assert table.features == s.features
    np.testing.assert_allclose(table.X, s.train.X, rtol=1e-5, atol=1e-5)


def test_unknown_scenario_lists_the_known_ones():
    with pytest.raises(ConfigError, match="covariate"):
        build("nope")


def test_the_payments_scenario_exports_raw_categories_and_empty_cells(tmp_path):
    s = build("payments", n_pre=200, n_post=800)
    assert s.schema is not None and s.features == s.schema.columns
    post = slice(s.stream.drift_at, None)
    other = s.features.index("country=<other>")
    assert s.train.X[:, other].max() == 0 and 0.05 < s.stream.X[post, other].mean() < 0.13  # the ring's XX
    assert s.stream.raw is not None and s.stream.raw[-1].keys() == set(s.schema.names)
    out = s.write_csv(tmp_path / "payments")
    text = (out / "stream.csv").read_text()
    assert ",XX," in text and ",," in text  # a category never seen in training, an empty cell
    table = load_table(out / "train.csv", "Class")
    assert table.schema == s.schema  # the exported table trains to the same schema
    np.testing.assert_allclose(table.X, s.train.X, rtol=1e-5)
    assert RuleSet.from_toml(s.rules_toml, table.features, schema=table.schema).names == [
        "new_device_big_amount"
    ]


def test_your_own_tables_with_categories_read_the_stream_through_the_training_schema(tmp_path):
    from shared.data import from_tables

    s = build("payments", n_pre=200, n_post=300)
    out = s.write_csv(tmp_path / "payments")
    own = from_tables(out / "train.csv", out / "stream.csv", "Class", drift_at=200)
    assert own.schema == s.schema and own.features == s.features
    np.testing.assert_allclose(own.stream.X, s.stream.X, rtol=1e-5)
    bad = tmp_path / "bad.csv"
    bad.write_text((out / "stream.csv").read_text().replace("\n", "\ntx-x,FR,web,grocery,lots,1,1,1,0\n", 1))
    with pytest.raises(DataError, match="column 'amount' is not numeric: 'lots' at line 2"):
        from_tables(out / "train.csv", bad, "Class")
