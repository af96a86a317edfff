from __future__ import annotations

import numpy as np
import pytest

from shared.drift import FIDI, ConflictRate
from shared.errors import ConfigError


def stream(rng, n_batches, shift_at=None, shift=0.0, feature=0, d=10, size=100):
    for i in range(n_batches):
        x = rng.normal(size=(size, d))
        if shift_at is not None and i >= shift_at:
            x[:, feature] += shift
        yield x


def test_detects_a_shift_at_an_exact_batch():
    rng = np.random.default_rng(0)
    fidi = FIDI(np.zeros(10), np.ones(10))
    batches = stream(rng, 40, shift_at=20, shift=0.8, feature=4)
    hits = [i for i, x in enumerate(batches) if fidi.update(x).drift_detected]
    assert hits == [22]
    assert fidi.drifting_features == ["4"]


def test_quiet_on_100k_no_drift_rows_with_many_features():
    rng = np.random.default_rng(1)
    fidi = FIDI(np.zeros(30), np.ones(30))
    alarms = sum(fidi.update(x).drift_detected for x in stream(rng, 1000, d=30))
    assert alarms == 0


def test_the_research_detector_is_a_special_case():
    """alpha=None, min_effect=1.0: the index is |window mean - mu| / sigma, as in the research code."""
    rng = np.random.default_rng(2)
    fidi = FIDI([-0.363], [1.323], alpha=None, min_effect=1.0)
    batches = [rng.normal(-2.2, 1.0, size=(100, 1)) for _ in range(5)]
    for x in batches[:2]:
        assert fidi.update(x).index == 0.0  # fewer than 3 batch means
    for k in range(2, 5):
        fidi.update(batches[k])
        expected = abs(np.mean([b.mean() for b in batches[: k + 1]]) + 0.363) / 1.323
        assert fidi.index == pytest.approx(expected)
    assert fidi.in_drift


def test_hysteresis_reports_drift_then_recovery_once():
    rng = np.random.default_rng(3)
    fidi = FIDI(np.zeros(3), np.ones(3), patience=3)
    events = []
    for i in range(80):
        x = rng.normal(size=(100, 3))
        if 20 <= i < 40:
            x[:, 1] += 1.0
        fidi.update(x)
        if fidi.drift_detected:
            events.append(("drift", i))
        if fidi.recovered:
            events.append(("recovered", i))
    assert [e[0] for e in events] == ["drift", "recovered"]
    assert 20 <= events[0][1] <= 24 and 40 <= events[1][1] <= 52
    assert not fidi.in_drift


def test_onset_estimate_points_near_the_change():
    rng = np.random.default_rng(4)
    fidi = FIDI(np.zeros(2), np.ones(2), window=20)
    for x in stream(rng, 30, shift_at=26, shift=1.5, feature=1, d=2):
        fidi.update(x)
    assert fidi.in_drift
    assert 300 <= fidi.onset_rows() <= 500  # four drifted batches of 100


def test_bad_input():
    fidi = FIDI(np.zeros(2), np.ones(2))
    with pytest.raises(ValueError, match="shape"):
        fidi.update(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="NaN"):
        fidi.update(np.array([[np.nan, 0.0]]))
    assert fidi.update(np.zeros((0, 2))).n_updates == 0
    with pytest.raises(ConfigError):
        FIDI(np.zeros(2), np.ones(3))
    with pytest.raises(ConfigError):
        FIDI(np.zeros(2), np.ones(2), alpha=2.0)
    with pytest.raises(ConfigError):
        FIDI(np.zeros(2), np.ones(2), window=3, min_batches=5)


def test_state_is_read_only():
    fidi = FIDI(np.zeros(2), np.ones(2))
    with pytest.raises(AttributeError):
        fidi.drift_detected = True  # type: ignore[misc]


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
