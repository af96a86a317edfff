from __future__ import annotations

import numpy as np
import pytest

from shared.drift import FIDI, ConflictRate, WindowFIDI
from shared.drift.scores import NormalScores, reference_quantiles
from shared.errors import ConfigError


def stream(rng, n_batches, shift_at=None, shift=0.0, feature=0, d=10, size=100):
    for i in range(n_batches):
        x = rng.normal(size=(size, d))
        if shift_at is not None and i >= shift_at:
            x[:, feature] += shift
        yield x


def first_alarm_row(fidi: FIDI, batches) -> int | None:
    row = 0
    for x in batches:
        fidi.update(x)
        if fidi.drift_detected:
            assert fidi.detected_at is not None
            return row + fidi.detected_at
        row += len(x)
    return None


def test_detects_a_shift_at_an_exact_row():
    rng = np.random.default_rng(0)
    fidi = FIDI(np.zeros(10), np.ones(10))
    assert first_alarm_row(fidi, stream(rng, 40, shift_at=20, shift=0.8, feature=4)) == 2034
    assert fidi.drifting_features == ["4"]
    assert fidi.effect[4] >= fidi.min_effect and fidi.z[4] >= fidi.z_crit


def test_the_row_does_not_depend_on_how_rows_are_batched():
    x = np.concatenate(list(stream(np.random.default_rng(0), 40, shift_at=20, shift=0.8, feature=4)))
    rows = [first_alarm_row(FIDI(np.zeros(10), np.ones(10)), np.array_split(x, k)) for k in (1, 7, 400)]
    assert rows == [2034, 2034, 2034]


def test_a_small_shift_is_caught_by_a_long_window():
    rng = np.random.default_rng(6)
    row = first_alarm_row(
        FIDI(np.zeros(10), np.ones(10)), stream(rng, 60, shift_at=20, shift=0.25, feature=1)
    )
    assert row is not None and 2000 + 300 <= row <= 2000 + 1500


def test_quiet_on_100k_no_drift_rows_with_many_features():
    rng = np.random.default_rng(1)
    fidi = FIDI(np.zeros(30), np.ones(30))
    alarms = sum(fidi.update(x).drift_detected for x in stream(rng, 1000, d=30))
    assert alarms == 0


def test_normal_scores_keep_a_skewed_feature_quiet():
    """Raw z-tests false-alarm on a log-normal feature at small windows; normal scores keep the
    designed rate (alpha = 1e-5 per row: at most one false alarm per 100k rows, by the union bound)."""
    rng = np.random.default_rng(7)
    train = rng.lognormal(3.5, 1.0, size=(5000, 2))
    live = rng.lognormal(3.5, 1.0, size=(100_000, 2))
    raw = FIDI(train.mean(0), train.std(0))
    robust = FIDI(train.mean(0), train.std(0), quantiles=reference_quantiles(train))
    batches = np.array_split(live, 1000)
    assert sum(raw.update(x).drift_detected for x in batches) >= 10
    assert sum(robust.update(x).drift_detected for x in batches) <= 1


def test_recovery_after_the_longest_window_calms_down():
    rng = np.random.default_rng(3)
    fidi = FIDI(np.zeros(3), np.ones(3), recovery_rows=500)
    events = []
    for i in range(100):
        x = rng.normal(size=(100, 3))
        if 20 <= i < 40:
            x[:, 1] += 1.0
        fidi.update(x)
        if fidi.drift_detected:
            events.append(("drift", i))
        if fidi.recovered:
            events.append(("recovered", i))
    assert [e[0] for e in events] == ["drift", "recovered"]
    assert events[0][1] == 20
    assert 40 <= events[1][1] <= 75  # the 2048-row window must forget the drift, then 500 calm rows
    assert not fidi.in_drift


def test_onset_estimate_points_near_the_change():
    rng = np.random.default_rng(4)
    fidi = FIDI(np.zeros(2), np.ones(2))
    for x in stream(rng, 30, shift_at=26, shift=1.5, feature=1, d=2):
        fidi.update(x)
    assert fidi.in_drift
    assert 380 <= fidi.onset_rows() <= 420  # four drifted batches of 100


def test_bad_input():
    fidi = FIDI(np.zeros(2), np.ones(2))
    with pytest.raises(ValueError, match="shape"):
        fidi.update(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="NaN"):
        fidi.update(np.array([[np.nan, 0.0]]))
    assert fidi.update(np.zeros((0, 2))).rows_seen == 0
    with pytest.raises(ConfigError):
        FIDI(np.zeros(2), np.ones(3))
    with pytest.raises(ConfigError):
        FIDI(np.zeros(2), np.ones(2), alpha=2.0)
    with pytest.raises(ConfigError):
        FIDI(np.zeros(2), np.ones(2), scales=())
    with pytest.raises(ConfigError, match="quantiles for 3"):
        FIDI(np.zeros(2), np.ones(2), quantiles=np.zeros((3, 5)))
    with pytest.raises(ConfigError, match="non-decreasing"):
        NormalScores(np.array([[1.0, 0.0, 2.0]]))


def test_state_is_read_only():
    fidi = FIDI(np.zeros(2), np.ones(2))
    with pytest.raises(AttributeError):
        fidi.drift_detected = True  # type: ignore[misc]


# -- the first, batch-level FIDI (the seed protocol's detector)
def test_window_fidi_is_the_research_detector():
    """alpha=None, min_effect=1.0: the index is |window mean - mu| / sigma, as in the research code."""
    rng = np.random.default_rng(2)
    fidi = WindowFIDI([-0.363], [1.323], alpha=None, min_effect=1.0)
    batches = [rng.normal(-2.2, 1.0, size=(100, 1)) for _ in range(5)]
    for x in batches[:2]:
        assert fidi.update(x).index == 0.0  # fewer than 3 batch means
    for k in range(2, 5):
        fidi.update(batches[k])
        expected = abs(np.mean([b.mean() for b in batches[: k + 1]]) + 0.363) / 1.323
        assert fidi.index == pytest.approx(expected)
    assert fidi.in_drift


def test_window_fidi_is_later_than_fidi_on_the_same_shift():
    x = np.concatenate(list(stream(np.random.default_rng(0), 40, shift_at=20, shift=0.8, feature=4)))
    window = WindowFIDI(np.zeros(10), np.ones(10))
    batch = next(i for i, b in enumerate(np.array_split(x, 40)) if window.update(b).drift_detected)
    assert batch * 100 > 2034  # the batch-level window judges later than the row-level FIDI


def test_conflict_rate_stays_quiet_at_its_reference_rate():
    rng = np.random.default_rng(5)
    cr = ConflictRate(0.01)
    alarms = sum(cr.update(int(rng.binomial(100, 0.01)), 100).elevated for _ in range(2000))
    assert alarms == 0
    for _ in range(10):
        cr.update(8, 100)
    assert cr.elevated
    with pytest.raises(ValueError):
        cr.update(5, 3)
