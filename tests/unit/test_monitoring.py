from __future__ import annotations

import numpy as np

from shared.monitoring import DriftMonitor


def test_drift_then_recovery_alerts_name_the_same_keys(covariate_bundle, covariate_scenario):
    b = covariate_bundle
    rng = np.random.default_rng(0)
    v14 = list(b.features).index("V14")
    monitor = DriftMonitor(b, batch_rows=100)
    train = covariate_scenario.train.X

    def rows(n: int, shift: float) -> np.ndarray:
        x: np.ndarray = train[rng.integers(0, len(train), size=n)].copy()  # the training distribution
        x[:, v14] += shift * b.reference_std[v14]
        return x

    quiet = monitor.add_transactions(rows(2000, 0.0))
    drift = monitor.add_transactions(rows(2000, 1.0), [1000.0 + i for i in range(2000)])
    back = monitor.add_transactions(rows(3000, 0.0))
    assert quiet == []
    assert [(a.key, a.state) for a in drift] == [("fidi", "drift"), ("V14", "drift")]
    assert drift[0].onset_rows is not None and drift[0].onset_ts is not None and drift[0].onset_ts >= 1000.0
    assert [(a.key, a.state) for a in back] == [("fidi", "recovered"), ("V14", "recovered")]
