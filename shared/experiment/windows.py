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
from shared.feedback import precision_at_k

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
    return cost_windows(pos, y, flags, costs, spans)


def feedback_spans(
    drift_at: int, first_feedback: int | None, first_chargeback: int | None, settle: int = LABELS_SETTLE
) -> dict[str, tuple[int, int | None]]:
    """The windows a feedback model (:mod:`shared.feedback`) splits a drift into: before any
    label, while only analysts' feedback comes (from ``settle`` rows after the first of the
    drift to the first chargeback), and once chargebacks come too (from ``settle`` after).

    >>> feedback_spans(2000, 4000, 22000)
    {'before_labels': (4000, 4000), 'feedback': (6000, 22000), 'after_chargebacks': (24000, None)}
    """
    out: dict[str, tuple[int, int | None]] = {}
    end = first_feedback if first_feedback is not None else first_chargeback
    out["before_labels"] = (drift_at + DIAGNOSE_SETTLE, end)
    if first_feedback is not None:
        out["feedback"] = (first_feedback + settle, first_chargeback)
    if first_chargeback is not None:
        out["after_chargebacks"] = (first_chargeback + settle, None)
    return out


def cost_windows(
    pos: np.ndarray,
    y: np.ndarray,
    flags: dict[str, np.ndarray],
    costs: CostMatrix,
    spans: dict[str, tuple[int, int | None]],
    alerts: tuple[dict[str, np.ndarray], int, float] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per span ``(from, to)`` (to None: the end), the cost of each flag set, the gap closed
    and how sure the gap is; ``alerts`` ``(scores, k, period)``: each model's P@k there too."""
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
        if alerts is not None:
            scores, k, period = alerts
            out[name]["p_at_k"] = {
                m: float(np.nanmean(precision_at_k(sc[rows], y[rows], pos[rows].astype(float), k, period)))
                for m, sc in scores.items()
            }
    return out
