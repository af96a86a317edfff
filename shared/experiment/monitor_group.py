"""Do monitors in a group alarm where one monitor does? The same stream judged three ways,
offline and deterministic, by the monitor's own cores:

* ``one``: one monitor judging every row, as it runs alone (the reference);
* ``blocks``: one monitor judging blocks of 16 rows (what a group's judge sees, without
  the interleaving of partitions);
* ``group``: ``instances`` monitors, each reading the rows of its share of ``partitions``
  (an id's partition by CRC32, as a keyed producer spreads them), summarising every
  ``batch`` rows of the stream's time into blocks, and one judge adding up their blocks in
  the order they come (instance by instance, batch by batch) -- what ``monitor-stats``
  carries between processes.

Each reports its alerts as (detector, state, row of the combined stream, features named).
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from shared.bundle import Bundle
from shared.data import Scenario
from shared.messages import Alert
from shared.monitoring import BLOCK_ROWS, DriftMonitor


def _events(alerts: list[Alert], mon: DriftMonitor, out: list[dict[str, Any]]) -> None:
    summary = [a for a in alerts if a.summary and a.detector in ("fidi", "categories")]
    named = sorted(a.feature for a in alerts if not a.summary)
    for a in summary:
        event = {"detector": a.detector, "state": a.state, "row": mon.rows, "features": named}
        if a.detector == "fidi" and a.state == "drift":
            event["window"] = _window(mon)
        out.append(event)


def _window(mon: DriftMonitor) -> int:
    """The window FIDI's strongest feature alarmed on (rows): ``(z / e)^2``."""
    j = int(np.argmax(mon.fidi.feature_index))
    e, z = mon.fidi.effect[j], mon.fidi.z[j]
    return round((z / e) ** 2) if e > 0 else 0


def one(bundle: Bundle, X: np.ndarray, batch: int, block_rows: int) -> list[dict[str, Any]]:
    """Alerts of one monitor reading the stream in order, ``batch`` rows at a time, judging
    every row (``block_rows`` 1) or blocks of that many (the row reported: the end of the
    batch that raised it, and for FIDI the row it alarmed at)."""
    mon, out = DriftMonitor(bundle), list[dict[str, Any]]()
    for i in range(0, len(X), batch):
        rows = X[i : i + batch]
        alerts = (
            mon.add_transactions(rows)
            if block_rows == 1
            else mon.add_blocks(mon.summarise(rows, None, block_rows))
        )
        _events(alerts, mon, out)
    _at_alarms(out, mon)
    return out


def group(
    bundle: Bundle, X: np.ndarray, ids: np.ndarray, batch: int, instances: int = 2, partitions: int = 4
) -> list[dict[str, Any]]:
    """Alerts of ``instances`` monitors in a group and their judge (see the module)."""
    part = np.array([zlib.crc32(str(i).encode()) % partitions for i in ids])
    owner = part % instances
    readers = [DriftMonitor(bundle) for _ in range(instances)]
    judge, out = DriftMonitor(bundle), list[dict[str, Any]]()
    for i in range(0, len(X), batch):
        for k, reader in enumerate(readers):
            mine = owner[i : i + batch] == k
            if mine.any():
                _events(judge.add_blocks(reader.summarise(X[i : i + batch][mine])), judge, out)
    _at_alarms(out, judge)
    return out


def _at_alarms(events: list[dict[str, Any]], mon: DriftMonitor) -> None:
    """FIDI's drift events at the row FIDI alarmed at, not the end of their batch."""
    drifts = [e for e in events if e["detector"] == "fidi" and e["state"] == "drift"]
    for e, row in zip(drifts, mon.alarm_rows, strict=True):
        e["row"] = row


def compare(
    bundle: Bundle, sc: Scenario, batch: int = 500, instances: int = 2, partitions: int = 4
) -> dict[str, Any]:
    """The three ways' alerts on ``sc``'s stream, and per FIDI alarm how far (rows) the
    blocks and the group are from the one monitor."""
    X, ids = sc.stream.X, sc.stream.ids
    runs = {
        "one": one(bundle, X, batch, 1),
        "blocks": one(bundle, X, batch, BLOCK_ROWS),
        "group": group(bundle, X, ids, batch, instances, partitions),
    }

    def alarms(events: list[dict[str, Any]]) -> list[int]:
        return [e["row"] for e in events if e["detector"] == "fidi" and e["state"] == "drift"]

    ref = alarms(runs["one"])
    shift = {
        k: [b - a for a, b in zip(ref, alarms(runs[k]), strict=False)]
        if len(alarms(runs[k])) == len(ref)
        else None
        for k in ("blocks", "group")
    }
    same = {
        k: [(e["detector"], e["state"]) for e in runs[k]]
        == [(e["detector"], e["state"]) for e in runs["one"]]
        for k in ("blocks", "group")
    }
    return {"rows": len(X), "batch": batch, "alerts": runs, "alarm_shift_rows": shift, "same_alerts": same}
