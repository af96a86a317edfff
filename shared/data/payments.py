"""A payments table with categories and missing values: three categorical columns (country,
channel, merchant category), four numbers (amount, device age, distance, hour), a share of
empty cells, and fraud that shows in the amount, the device age and the distance.

>>> cols = payments_table(1000, seed=0)
>>> sorted(cols), round(sum(cols["Class"]) / 1000, 2)
(['Class', 'amount', 'channel', 'country', 'device_age', 'distance', 'hour', 'mcc'], 0.09)
>>> round(sum(v is None for v in cols["distance"]) / 1000, 2)
0.06
"""

from __future__ import annotations

import numpy as np

COUNTRIES = ("FR", "DE", "ES", "IT", "PT")
CHANNELS = ("web", "app", "pos")
MERCHANTS = ("grocery", "dining", "gaming")


def payments_table(
    n: int, seed: int = 0, missing: float = 0.05, fraud_rate: float = 0.1
) -> dict[str, list[object]]:
    """``n`` rows as columns (``Class`` 1 = fraud); each feature cell empty (None) with
    probability ``missing``."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < fraud_rate
    cols: dict[str, list[object]] = {
        "country": [str(v) for v in rng.choice(COUNTRIES, n)],
        "channel": [str(v) for v in rng.choice(CHANNELS, n, p=[0.3, 0.3, 0.4])],
        "mcc": [str(v) for v in rng.choice(MERCHANTS, n)],
        "amount": np.round(rng.lognormal(3 + 1.5 * y, 1.0), 2).tolist(),
        "device_age": np.round(rng.exponential(300, n) * np.where(y, 0.1, 1.0), 1).tolist(),
        "distance": np.round(rng.exponential(10, n) * np.where(y, 5, 1.0), 2).tolist(),
        "hour": rng.integers(0, 24, n).astype(float).tolist(),
    }
    for values in cols.values():
        for i in np.flatnonzero(rng.random(n) < missing):
            values[i] = None
    cols["Class"] = y.astype(int).tolist()
    return cols


def write_csv(path: str, cols: dict[str, list[object]]) -> None:
    """The columns as CSV, an empty cell for None."""
    names = list(cols)
    lines = [",".join(names)]
    for i in range(len(cols[names[0]])):
        lines.append(",".join("" if cols[c][i] is None else str(cols[c][i]) for c in names))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
