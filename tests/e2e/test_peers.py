"""selfheal beside River's online learners on one stream (``selfheal peers``): the same
clean rows, labels equally late, judged on the same rows; and a user's own tables."""

from __future__ import annotations

import numpy as np
import pytest

from shared.data import build, from_tables
from shared.errors import ConfigError
from shared.experiment import ExperimentConfig
from shared.experiment.peers import compare, format_peers

pytest.importorskip("river")


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """The new-pattern drift, small, written as a user's tables (train.csv, stream.csv)."""
    out = tmp_path_factory.mktemp("tables")
    sc = build("new-pattern", n_pre=1000, n_post=3000)
    sc.write_csv(out)
    return out, sc


def test_a_users_tables_make_the_same_scenario(tables):
    out, sc = tables
    mine = from_tables(out / "train.csv", out / "stream.csv", "Class", sc.rules_toml, sc.stream.drift_at)
    assert mine.features == sc.features and mine.stream.drift_at == sc.stream.drift_at
    np.testing.assert_allclose(mine.stream.X, sc.stream.X, rtol=1e-5)
    np.testing.assert_array_equal(mine.stream.y, sc.stream.y)
    assert np.isnan(mine.stream.posterior).all()  # no generator behind a user's stream
    with pytest.raises(ConfigError, match="outside the stream"):
        from_tables(out / "train.csv", out / "stream.csv", "Class", drift_at=len(sc.stream))


def test_selfheal_and_an_online_learner_are_judged_on_the_same_rows(tables):
    out, sc = tables
    mine = from_tables(out / "train.csv", out / "stream.csv", "Class", sc.rules_toml, sc.stream.drift_at)
    cfg = ExperimentConfig(scenario=mine.name, label_delay=300, n_pre=1000, n_post=3000)
    result = compare(cfg, mine, lambda _msg: None, peers=["river_hat"])
    systems = result["systems"]
    assert set(systems) == {"selfheal", "frozen", "river_hat"}
    assert result["eval"]["from"] == sc.stream.drift_at + cfg.adapt_window
    assert systems["river_hat"]["threshold"] == cfg.costs.bayes_threshold
    # the new pattern: the frozen model misses half the fraud; healing and learning both help
    assert systems["selfheal"]["cost"] < systems["frozen"]["cost"]
    assert systems["river_hat"]["cost"] < systems["frozen"]["cost"]
    table = format_peers([result])
    assert table.splitlines()[2].startswith(f"| {mine.name} | 300 |") and "**" in table


def test_the_command_wants_train_and_stream_together(tmp_path, capsys):
    from services.cli import main

    assert main(["peers", "--train", "t.csv", "--out", str(tmp_path)]) == 2
    assert "give --train and --stream together" in capsys.readouterr().err
