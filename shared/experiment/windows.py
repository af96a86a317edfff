"""The two windows a late label splits a drift into, with their baselines.

*Before labels*: from ``DIAGNOSE_SETTLE`` rows after the drift point (the rows a drift
takes to be detected and diagnosed) to the arrival of the first post-drift label; only
label-free healing can help there. *After labels*: from ``LABELS_SETTLE`` rows after that
arrival to the end of the stream. Each reports the cost per transaction of no-heal (the
frozen shadow), healed and the oracle on the same rows, and the gap closed.

>>> import numpy as np
>>> y = np.array([0, 1] * 100)
>>> flags = {"noheal": np.zeros(200, bool), "healed": y.astype(bool), "oracle": y.astype(bool)}
>>> w = label_windows(np.arange(200), y, flags, CostMatrix(), 0, first_label=110, settle=20, diagnose=50)
>>> before, after = w["before_labels"], w["after_labels"]
>>> before["from"], before["to"], after["from"], after["gap_closed"]
(50, 110, 130, 1.0)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shared.evaluation import CostMatrix, metrics_from_predictions, paired_z

LABELS_SETTLE = 2000  # rows after the first post-drift label before the after-labels window
DIAGNOSE_SETTLE = 2000  # rows after the drift point before the before-labels window
MIN_ROWS = 50  # a window with fewer labelled rows is not reported


def label_windows(
    pos: np.ndarray,
    y: np.ndarray,
    flags: dict[str, np.ndarray],
    costs: CostMatrix,
    drift_at: int,
    first_label: int,
    settle: int = LABELS_SETTLE,
    diagnose: int = DIAGNOSE_SETTLE,
) -> dict[str, dict[str, Any]]:
    """``pos``: each row's stream position; ``flags``: noheal, healed and oracle decisions."""
    spans = {
        "before_labels": (drift_at + diagnose, first_label),
        "after_labels": (first_label + settle, None),
    }
    out: dict[str, dict[str, Any]] = {}
    for name, (lo, hi) in spans.items():
        rows = (pos >= lo) & (pos < hi if hi is not None else True)
        if rows.sum() < MIN_ROWS:
            continue
        cost = {k: metrics_from_predictions(y[rows], f[rows], costs).cost for k, f in flags.items()}
        gap = cost["noheal"] - cost["oracle"]
        closed = (cost["noheal"] - cost["healed"]) / gap if gap > 1e-9 else None
        per_row = {k: costs.per_row(y[rows], flags[k][rows]) for k in ("noheal", "oracle")}
        out[name] = {"from": lo, "to": hi if hi is not None else int(pos.max()) + 1, "rows": int(rows.sum())}
        # how sure the gap is: paired z of the frozen model's per-row cost over the oracle's
        out[name] |= {**cost, "gap_closed": closed, "gap_z": paired_z(per_row["noheal"] - per_row["oracle"])}
    return out
