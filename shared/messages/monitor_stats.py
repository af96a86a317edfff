"""``monitor-stats`` (key: the monitor instance, one partition): what a monitor of a group
saw, as the sufficient statistics the one judging for the group adds up.

Monitors in one consumer group each read some partitions of ``transactions`` and
``decisions``. Each publishes, for every batch it reads, the blocks of its transactions
(:class:`~shared.monitoring.Blocks`: per block its rows, the event time of its first row,
the sums of FIDI's scores and of the category cells) and its decisions' conflict counts per
``batch_rows`` decisions. The instance that holds this topic's one partition judges them
all in arrival order and raises the alerts (``services/monitor``).

Safetensors bytes (never pickle): tensors ``rows`` (B,) int64, ``ts`` (B,) float64 (NaN:
not stamped), ``fidi`` (B, features) float64, ``cells`` (B, cells) float64 when the bundle
has category fields, ``conflicts`` (C, 2) int64 (conflicts, decisions); metadata ``format``
(``selfheal-monitor-stats/1``), ``bundle`` (its id) and ``source`` (the instance).

>>> import numpy as np
>>> from shared.monitoring import Blocks
>>> blocks = Blocks(np.array([16, 4]), np.array([1.0, np.nan]), np.ones((2, 3)), None)
>>> stats = decode_stats(encode_stats(MonitorStats("b1", "monitor-a", blocks, [(2, 100)])))
>>> stats.blocks.rows.tolist(), stats.blocks.fidi.shape, stats.conflicts, stats.source
([16, 4], (2, 3), [(2, 100)], 'monitor-a')
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import orjson
from safetensors import SafetensorError
from safetensors.numpy import load, save

from shared.messages.reject import Reject, RejectCode
from shared.monitoring import Blocks

FORMAT = "selfheal-monitor-stats/1"


@dataclass(frozen=True)
class MonitorStats:
    bundle: str
    source: str  # the monitor instance that read these rows
    blocks: Blocks
    conflicts: list[tuple[int, int]]  # (conflicts, decisions) per chunk of decisions


def encode_stats(stats: MonitorStats) -> bytes:
    b = stats.blocks
    tensors = {
        "rows": np.ascontiguousarray(b.rows, np.int64),
        "ts": np.ascontiguousarray(b.ts, np.float64),
        "fidi": np.ascontiguousarray(b.fidi, np.float64),
        "conflicts": np.array(stats.conflicts, np.int64).reshape(-1, 2),
    }
    if b.cells is not None:
        tensors["cells"] = np.ascontiguousarray(b.cells, np.float64)
    return save(tensors, metadata={"format": FORMAT, "bundle": stats.bundle, "source": stats.source})


def decode_stats(raw: bytes | None) -> MonitorStats | Reject:
    """The statistics in ``raw``, or why the record does not hold them."""
    if not raw:
        return Reject(RejectCode.EMPTY, "empty message")
    try:
        meta = _metadata(raw)
        t = load(raw)
    except (SafetensorError, ValueError, struct.error, orjson.JSONDecodeError) as exc:
        return Reject(RejectCode.SCHEMA, f"not monitor statistics: {exc}")
    if meta.get("format") != FORMAT:
        return Reject(RejectCode.SCHEMA, f"format {meta.get('format')!r}, expected {FORMAT!r}")
    try:
        rows, ts, fidi, conflicts = t["rows"], t["ts"], t["fidi"], t["conflicts"]
        cells = t.get("cells")
    except KeyError as exc:
        return Reject(RejectCode.SCHEMA, f"missing tensor {exc}")
    n = len(rows)
    shapes_ok = ts.shape == (n,) and fidi.ndim == 2 and len(fidi) == n and conflicts.ndim == 2
    if not shapes_ok or (cells is not None and (cells.ndim != 2 or len(cells) != n)):
        return Reject(RejectCode.VALUE, "tensor shapes do not agree")
    if (rows < 1).any() or not np.isfinite(fidi).all() or (conflicts < 0).any():
        return Reject(RejectCode.VALUE, "row counts < 1, sums not finite or negative conflict counts")
    pairs = [(int(c), int(d)) for c, d in conflicts.tolist()]
    blocks = Blocks(rows, ts, fidi, cells)
    return MonitorStats(str(meta.get("bundle", "")), str(meta.get("source", "")), blocks, pairs)


def _metadata(raw: bytes) -> dict[str, str]:
    """The safetensors header's ``__metadata__`` (an 8-byte length, then JSON)."""
    (size,) = struct.unpack("<Q", raw[:8])
    header = orjson.loads(raw[8 : 8 + size])
    meta = header.get("__metadata__", {}) if isinstance(header, dict) else {}
    return meta if isinstance(meta, dict) else {}
