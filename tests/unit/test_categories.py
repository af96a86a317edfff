"""CategoryShift: the chi-square test of category frequencies beside FIDI."""

from __future__ import annotations

import numpy as np
import pytest

from shared.drift.categories import CategoryGroup, CategoryShift, chi2_isf, chi2_sf
from shared.errors import ConfigError

# two fields as a schema encodes them: (frequent..., <other>, <missing>) each
SHARES = ((0.2, 0.2, 0.2, 0.2, 0.15, 0.0, 0.05), (0.3, 0.3, 0.35, 0.0, 0.05))
GROUPS = [
    CategoryGroup("country", tuple(range(7)), ("a", "b", "c", "d", "e", "<other>", "<missing>"), SHARES[0]),
    CategoryGroup("channel", tuple(range(7, 12)), ("web", "app", "pos", "<other>", "<missing>"), SHARES[1]),
]


def rows(rng: np.random.Generator, n: int, shares=SHARES) -> np.ndarray:
    return np.concatenate([np.eye(len(p))[rng.choice(len(p), n, p=np.array(p) / sum(p))] for p in shares], 1)


def test_the_chi_square_tail_is_exact():
    # reference values (scipy.stats.chi2.sf / isf)
    assert chi2_sf(3.841458820694124, 1) == pytest.approx(0.05, rel=1e-9)
    assert chi2_sf(9.21034037197618, 2) == pytest.approx(0.01, rel=1e-9)
    assert chi2_sf(40.0, 5) == pytest.approx(1.493367900050393e-07, rel=1e-9)
    assert chi2_isf(1e-7, 3) == pytest.approx(35.40575157993727, rel=1e-9)
    assert chi2_isf(1e-7, 21) == pytest.approx(73.37794479863014, rel=1e-9)


def test_no_false_alarm_in_100000_rows():
    det = CategoryShift(GROUPS)
    rng = np.random.default_rng(7)
    for _ in range(1000):
        assert not det.update(rows(rng, 100)).drift_detected
    assert det.rows_seen == 100_000 and det.index < 1.0


def test_a_new_category_is_found_named_and_recovers():
    rng = np.random.default_rng(1)
    det = CategoryShift(GROUPS)
    for _ in range(30):
        det.update(rows(rng, 100))
    moved = (0.18, 0.18, 0.18, 0.18, 0.13, 0.10, 0.05)  # 10% from a country never seen
    found = None
    for i in range(30):
        det.update(rows(rng, 100, (moved, SHARES[1])))
        if det.drift_detected:
            found = i * 100 + (det.detected_at or 0) + 1
            break
    assert found is not None and found <= 1000
    assert det.drifting_fields == ["country"] and det.in_drift
    category, share, reference = det.moved["country"]
    assert category == "<other>" and share > 0.05 and reference == 0.0
    assert det.effect[0] >= det.min_effect and 256 <= det.onset_rows() <= 2048
    back = False
    for _ in range(60):
        back = back or det.update(rows(rng, 100)).recovered
    assert back and not det.in_drift


def test_a_missing_rate_moving_is_named_and_a_rarer_unseen_value_alone_is_not_drift():
    rng = np.random.default_rng(2)
    blank = (SHARES[0], (0.2, 0.2, 0.3, 0.0, 0.3))  # channel missing 5% -> 30%
    det = CategoryShift(GROUPS)
    for i in range(50):
        det.update(rows(rng, 100, SHARES if i < 20 else blank))
        if det.drift_detected:
            break
    ((category, share, reference),) = det.moved.values()
    assert list(det.moved) == ["channel"] and category == "<missing>" and share > 0.1 and reference == 0.05
    few = ((*SHARES[0][:5], 0.01, 0.04), SHARES[1])  # 1% unseen (below the 2% floor)
    quiet = CategoryShift(GROUPS)
    assert not any(quiet.update(rows(rng, 100, few)).drift_detected for _ in range(200))


def test_bad_settings_and_rows_are_refused():
    with pytest.raises(ConfigError):
        CategoryShift([])
    with pytest.raises(ConfigError):
        CategoryShift([CategoryGroup("x", (0,), ("a",), (1.0,))])
    with pytest.raises(ConfigError):
        CategoryShift([CategoryGroup("x", (0, 1), ("a", "b"), (1.0,))])
    with pytest.raises(ValueError, match="at least 12 inputs"):
        CategoryShift(GROUPS).update(np.zeros((3, 5)))
