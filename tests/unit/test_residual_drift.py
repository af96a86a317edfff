"""The score test on arrived labels: quiet while the frozen model errs as it did in
training, alarmed soon after the meaning of features changes, even at a few % fraud."""

import numpy as np
import pytest

from shared.errors import ConfigError
from shared.healing.residual_drift import ResidualDrift, chi2_isf

D, A = 20, -4.5  # inputs; intercept for about 3% fraud
W = np.zeros(D)
W[:4] = [1.0, 0.8, -0.6, 0.5]
SWITCH = 30_000


def _sig(z: np.ndarray) -> np.ndarray:
    return np.asarray(1 / (1 + np.exp(-z)))


def _trained(rng: np.random.Generator, n: int, **kw: float) -> tuple[ResidualDrift, np.ndarray, np.ndarray]:
    """A detector on 3,000 reference rows where the frozen model is right, and ``n`` stream
    rows with the frozen model's probabilities on them."""
    X = rng.normal(size=(3000, D))
    p = _sig(A + X @ W)
    det = ResidualDrift.from_reference(X, (rng.random(3000) < p).astype(float), p, **kw)
    Xs = rng.normal(size=(n, D))
    return det, Xs, _sig(A + Xs @ W)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quiet_in_the_training_regime_then_alarmed_by_a_concept_switch(seed):
    rng = np.random.default_rng(seed)
    det, Xs, ps = _trained(rng, 40_000)
    switched = W.copy()
    switched[1:3] *= -1  # two features now mean the opposite
    truth = np.where(np.arange(40_000) < SWITCH, ps, _sig(A + Xs @ switched))
    ys = (rng.random(40_000) < truth).astype(float)
    changes = det.update(ys, ps, Xs, np.arange(40_000.0))
    assert len(changes) == 1 and changes[0][0] == "drift" and det.drift_detected
    onset = changes[0][1]
    assert onset is not None and SWITCH - det.rows <= onset <= SWITCH + 1000


def test_recovers_when_the_residuals_are_back():
    rng = np.random.default_rng(3)
    det, Xs, ps = _trained(rng, 12_000, rows=2000)
    switched = W.copy()
    switched[0] *= -1
    drifted = (np.arange(12_000) >= 2000) & (np.arange(12_000) < 6000)
    ys = (rng.random(12_000) < np.where(drifted, _sig(A + Xs @ switched), ps)).astype(float)
    states = [s for s, _ in det.update(ys, ps, Xs, np.arange(12_000.0))]
    assert states == ["drift", "recovered"] and not det.drift_detected


def test_waits_for_enough_frauds_in_the_window():
    det, Xs, ps = _trained(np.random.default_rng(4), 6000, min_frauds=2000)
    assert det.update(np.ones(6000), ps, Xs, np.arange(6000.0)) == [("drift", 0.0)]
    det, Xs, ps = _trained(np.random.default_rng(4), 6000, min_frauds=2000)
    assert det.update(np.zeros(6000), ps, Xs, np.arange(6000.0)) == []


def test_constant_inputs_are_left_out_and_bad_settings_refused():
    rng = np.random.default_rng(5)
    X = np.column_stack([rng.normal(size=3000), np.zeros(3000)])
    p = _sig(-3 + X[:, 0])
    det = ResidualDrift.from_reference(X, (rng.random(3000) < p).astype(float), p)
    assert det.dof == 2  # the intercept and the one varying input
    with pytest.raises(ConfigError):
        ResidualDrift.from_reference(X, np.zeros(3000), p, rows=10)


def test_the_chi_square_quantile_is_close():
    assert chi2_isf(0.05, 10) == pytest.approx(18.307, rel=0.01)
    assert chi2_isf(1e-6, 30) == pytest.approx(82.29, rel=0.02)
