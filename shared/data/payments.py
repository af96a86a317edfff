"""A payments table with categories and missing values, and the library scenario built on it.

Three categorical columns (country, channel, merchant category), four numbers (amount,
device age, distance, hour), a share of empty cells, and fraud that shows in the amount,
the device age and the distance. The scenario ``payments`` drifts two ways at once at its
drift point: a fraud ring starts from a country never seen in training (``XX``; 6% of
the rows, with legitimate-looking numbers, beside 3% legitimate ``XX`` traffic), and an
upstream outage blanks ``distance`` on 30% of the rows (5% before).

>>> cols = payments_table(1000, seed=0)
>>> sorted(cols), round(sum(cols["Class"]) / 1000, 2)
(['Class', 'amount', 'channel', 'country', 'device_age', 'distance', 'hour', 'mcc'], 0.09)
>>> round(sum(v is None for v in cols["distance"]) / 1000, 2)
0.06
"""

from __future__ import annotations

import csv

import numpy as np

COUNTRIES = ("FR", "DE", "ES", "IT", "PT")
CHANNELS = ("web", "app", "pos")
MERCHANTS = ("grocery", "dining", "gaming")
FRAUD_RATE = 0.1
RING, RING_LEGIT, RING_COUNTRY = 0.06, 0.03, "XX"  # after the drift: shares of the rows
MISSING, OUTAGE = 0.05, 0.30  # missing cells before; distance missing after the drift

PAYMENTS_RULES = """\
# Domain rules for the payments scenario (its fields are raw: categories and numbers).
[[rule]]
name = "new_device_big_amount"
when = "device_age < 10 and amount > 150"
label = "fraud"
weight = 1.0
"""


def payments_table(
    n: int, seed: int = 0, missing: float = MISSING, fraud_rate: float = FRAUD_RATE
) -> dict[str, list[object]]:
    """``n`` rows as columns (``Class`` 1 = fraud); each feature cell empty (None) with
    probability ``missing``."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < fraud_rate
    cols = _features(rng, n, y)
    _blank(rng, cols, missing)
    cols["Class"] = y.astype(int).tolist()
    return cols


def _features(rng: np.random.Generator, n: int, fraud_like: np.ndarray) -> dict[str, list[object]]:
    return {
        "country": [str(v) for v in rng.choice(COUNTRIES, n)],
        "channel": [str(v) for v in rng.choice(CHANNELS, n, p=[0.3, 0.3, 0.4])],
        "mcc": [str(v) for v in rng.choice(MERCHANTS, n)],
        "amount": np.round(rng.lognormal(3 + 1.5 * fraud_like, 1.0), 2).tolist(),
        "device_age": np.round(rng.exponential(300, n) * np.where(fraud_like, 0.1, 1.0), 1).tolist(),
        "distance": np.round(rng.exponential(10, n) * np.where(fraud_like, 5, 1.0), 2).tolist(),
        "hour": rng.integers(0, 24, n).astype(float).tolist(),
    }


def _blank(rng: np.random.Generator, cols: dict[str, list[object]], rate: float, **per_column: float) -> None:
    n = len(next(iter(cols.values())))
    for name, values in cols.items():
        for i in np.flatnonzero(rng.random(n) < per_column.get(name, rate)):
            values[i] = None


def drifted_rows(
    rng: np.random.Generator, n: int, drifted: bool
) -> tuple[dict[str, list[object]], np.ndarray, np.ndarray]:
    """(raw columns, labels, Bayes posterior p(fraud | row)) of ``n`` rows, before or after
    the drift."""
    kind = rng.choice(3, n, p=[1 - RING - RING_LEGIT, RING, RING_LEGIT]) if drifted else np.zeros(n, int)
    regular_fraud = (kind == 0) & (rng.random(n) < FRAUD_RATE)
    y = regular_fraud | (kind == 1)
    cols = _features(rng, n, regular_fraud)
    for i in np.flatnonzero(kind > 0):
        cols["country"][i] = RING_COUNTRY
    _blank(rng, cols, MISSING, **({"distance": OUTAGE} if drifted else {}))
    posterior = np.where(kind > 0, RING / (RING + RING_LEGIT), _naive_bayes(cols))
    return cols, y.astype(np.float32), posterior


def _naive_bayes(cols: dict[str, list[object]]) -> np.ndarray:
    """p(fraud) of a regular row: the numbers are independent given the class, a missing
    one (blanked at random) says nothing."""

    def arr(name: str) -> np.ndarray:
        return np.array([np.nan if v is None else float(v) for v in cols[name]])  # type: ignore[arg-type]

    a, d, s = arr("amount"), arr("device_age"), arr("distance")
    la = np.log(np.maximum(a, 1e-3))
    llr = np.nan_to_num(((la - 3.0) ** 2 - (la - 4.5) ** 2) / 2)
    llr += np.nan_to_num(np.log(10.0) - d / 30 + d / 300)
    llr += np.nan_to_num(np.log(0.2) - s / 50 + s / 10)
    prior = np.log(FRAUD_RATE / (1 - FRAUD_RATE))
    return 1 / (1 + np.exp(-(prior + llr)))  # type: ignore[no-any-return]


def write_csv(path: str, cols: dict[str, list[object]]) -> None:
    """The columns as CSV (quoted where a value needs it), an empty cell for None."""
    names = list(cols)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(names)
        for i in range(len(cols[names[0]])):
            w.writerow(["" if cols[c][i] is None else cols[c][i] for c in names])
