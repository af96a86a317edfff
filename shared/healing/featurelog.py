"""The feature log: every transaction's features by id, kept on disk for a label horizon.

Labels arrive minutes to weeks after their transaction; to learn from one, the healer
needs the features it was decided on. The log keeps each row (features, event time, the
decision made on it) in SQLite (WAL), in *segments* of ``horizon / segments`` of event
time, one table each, as Kafka Streams' window stores do: a segment older than the
horizon is dropped whole, so expiry costs nothing per row.

**The byte budget.** Below ``budget_bytes`` every row is kept. When the log reaches it,
the sample halves: rows whose id hashes into the upper half of what was kept are deleted
(the hash leads the primary key, so that is a range delete) and new ones are no longer
written, except rows the scorer flagged or a rule fired on, which are always kept. The
sample is deterministic: :meth:`sampled` says at once whether a label's transaction can be
in the log, and what was not kept is counted. When flagged rows alone exceed the budget,
the oldest segments go before the horizon. Why SQLite and not RocksDB (``rocksdict``):
``make bench`` measures both (``services/bench/featurelog.py``); docs/design.md, "Late labels".

>>> import numpy as np
>>> log = FeatureLog(None, n_features=2, horizon_ms=1000.0, budget_bytes=1 << 30)
>>> rows = log.encode(np.arange(6.0).reshape(3, 2), ts=[0.0, 10.0, 20.0], flags=[0, 1, 0])
>>> log.put(["a", "b", "c"], rows)
3
>>> found = log.get(["b", "x"])
>>> sorted(found), log.decode(found["b"])["x"].tolist(), int(log.decode(found["b"])["flags"][0])
(['b'], [[2.0, 3.0]], 1)
>>> log.advance(2000.0)   # event time moves past the horizon: the segment goes
1
>>> log.get(["a"])
{}
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

FLAGGED = 1  # the scorer flagged it or a rule fired: kept whatever the sample
FRAUD = 2  # the live adapter's verdict
SHADOW_FRAUD = 4  # the frozen shadow's verdict
DECIDED = 8  # a decision was seen (the two bits above mean something)
HASH_SPACE = 1 << 32
MIN_SAMPLE = 1 / 1024  # the sample never falls below this (flagged rows aside)
CACHE_KB = 32 * 1024  # SQLite's page cache: random inserts into a large log need more than 2 MB
COMMIT_EVERY_S = 0.5  # writes are committed (and the budget checked) at most this often


def id_hash(tx_id: str) -> int:
    """A stable 32-bit hash of a transaction id: what the sample is drawn by."""
    return int.from_bytes(hashlib.blake2b(tx_id.encode(), digest_size=4).digest(), "big")


def row_dtype(n_features: int) -> np.dtype[Any]:
    """One logged row: event time (ms), flag bits, the adapter version, the features."""
    return np.dtype([("ts", "<f8"), ("flags", "u1"), ("version", "<i4"), ("x", "<f4", (n_features,))])


class FeatureLog:
    def __init__(
        self,
        path: str | Path | None,
        n_features: int,
        horizon_ms: float,
        budget_bytes: int,
        segments: int = 8,
    ) -> None:
        """``path`` None keeps the log in memory (offline experiments, tests)."""
        if horizon_ms <= 0 or budget_bytes <= 0 or segments < 1:
            raise ValueError("horizon_ms, budget_bytes and segments must be positive")
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.dtype = row_dtype(n_features)
        self.horizon_ms, self.budget_bytes = float(horizon_ms), int(budget_bytes)
        self.segment_ms = self.horizon_ms / segments
        self.db = sqlite3.connect(str(self.path) if self.path else ":memory:", check_same_thread=False)
        self.db.execute("PRAGMA page_size=16384")  # a new log only: fewer, fuller pages for random inserts
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; a crash loses the last writes
        self.db.execute(f"PRAGMA cache_size=-{CACHE_KB}")  # inserts land at random (hash-led keys)
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value REAL) WITHOUT ROWID")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS joined (h INTEGER, id TEXT, ts REAL, label REAL, row BLOB, "
            "PRIMARY KEY (h, id)) WITHOUT ROWID"
        )
        self.segments: list[int] = sorted(
            int(name[4:])
            for (name,) in self.db.execute("SELECT name FROM sqlite_master WHERE name GLOB 'seg_*'")
        )
        self.sample = self._meta("sample", 1.0)  # the share of unflagged rows kept
        self.watermark = self._meta("watermark", float("-inf"))  # newest event time seen
        self.not_kept = 0  # unflagged rows left out by the sample (this process)
        self.bytes = self.used_bytes()  # as of the last commit (stats read this, not the database)
        self._committed = 0.0
        self.dropped_segments = 0  # segments past the horizon
        self.early_drops = 0  # segments dropped before the horizon, to keep to the budget

    def _meta(self, key: str, default: float) -> float:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return float(row[0]) if row else default

    def _set_meta(self, key: str, value: float) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- rows
    def encode(
        self,
        X: np.ndarray,
        ts: Sequence[float],
        flags: Sequence[int] | None = None,
        versions: Sequence[int] | None = None,
    ) -> np.ndarray:
        rows = np.zeros(len(ts), dtype=self.dtype)
        rows["ts"], rows["x"] = ts, X
        if flags is not None:
            rows["flags"] = flags
        if versions is not None:
            rows["version"] = versions
        return rows

    def decode(self, blobs: bytes | Iterable[bytes]) -> np.ndarray:
        data = blobs if isinstance(blobs, bytes) else b"".join(blobs)
        return np.frombuffer(data, dtype=self.dtype)

    def sampled(self, tx_id: str) -> bool:
        """Whether an unflagged transaction with this id is kept by the sample now."""
        return id_hash(tx_id) < self.sample * HASH_SPACE

    def put(self, ids: Sequence[str], rows: np.ndarray) -> int:
        """Log rows (the sample and the horizon permitting); returns how many were written."""
        if not len(rows):
            return 0
        hashes = np.fromiter((id_hash(i) for i in ids), dtype=np.int64, count=len(ids))
        wanted = (hashes < self.sample * HASH_SPACE) | (rows["flags"] & FLAGGED).astype(bool)
        keep = wanted & (rows["ts"] >= self.watermark - self.horizon_ms)
        self.not_kept += int((~wanted).sum())
        segments = np.maximum(rows["ts"] // self.segment_ms, 0).astype(np.int64)  # before 1970: the first
        blob, size = rows.tobytes(), rows.dtype.itemsize
        for seg in np.unique(segments[keep]).tolist():
            self._segment(seg)
            idx = np.flatnonzero(keep & (segments == seg)).tolist()
            values = sorted((int(hashes[k]), ids[k], blob[k * size : (k + 1) * size]) for k in idx)
            self.db.executemany(f"INSERT OR IGNORE INTO seg_{seg} VALUES (?, ?, ?)", values)  # noqa: S608
        self.advance(float(rows["ts"].max()))
        self.commit()
        return int(keep.sum())

    def commit(self, force: bool = False) -> None:
        """Commit at most every ``COMMIT_EVERY_S`` (a crash loses at most that much), and
        check the budget then."""
        now = time.monotonic()
        if force or now - self._committed >= COMMIT_EVERY_S:
            self.db.commit()
            self._committed = now
            self.enforce_budget()

    def _segment(self, seg: int) -> None:
        if seg not in self.segments:
            self.db.execute(
                f"CREATE TABLE IF NOT EXISTS seg_{seg} (h INTEGER, id TEXT, row BLOB, "
                "PRIMARY KEY (h, id)) WITHOUT ROWID"
            )
            self.segments = sorted([*self.segments, seg])

    def get(self, ids: Sequence[str]) -> dict[str, bytes]:
        """The logged rows of these ids (an id not logged is absent), newest segment first."""
        wanted = {tx_id: id_hash(tx_id) for tx_id in ids}
        found: dict[str, bytes] = {}
        for seg in reversed(self.segments):
            todo = [h for tx_id, h in wanted.items() if tx_id not in found]
            for k in range(0, len(todo), 900):
                chunk = todo[k : k + 900]
                marks = ",".join("?" * len(chunk))
                q = f"SELECT id, row FROM seg_{seg} WHERE h IN ({marks})"  # noqa: S608
                for tx_id, row in self.db.execute(q, chunk):
                    if tx_id in wanted:
                        found.setdefault(tx_id, row)
        return found

    def advance(self, ts: float) -> int:
        """Event time has reached ``ts``: drop the segments wholly older than the horizon."""
        if ts <= self.watermark:
            return 0
        self.watermark = ts
        self._set_meta("watermark", ts)
        old = [s for s in self.segments if (s + 1) * self.segment_ms <= ts - self.horizon_ms]
        for seg in old:
            self.db.execute(f"DROP TABLE seg_{seg}")
        self.segments = [s for s in self.segments if s not in old]
        self.dropped_segments += len(old)
        if old:
            self.db.execute("DELETE FROM joined WHERE ts < ?", (ts - self.horizon_ms,))
        return len(old)

    # -- the budget
    def used_bytes(self) -> int:
        """Bytes of the database in use (pages minus free pages)."""
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        size = self.db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def enforce_budget(self) -> None:
        """Over the budget: halve the sample, deleting the unflagged rows it leaves out; at the
        smallest sample (flagged rows alone over the budget), drop the oldest segments: the
        horizon shortens rather than the disk filling (``early_drops``)."""
        self.bytes = self.used_bytes()
        while self.bytes > self.budget_bytes and self.sample > MIN_SAMPLE:
            self.sample /= 2
            self._set_meta("sample", self.sample)
            cut = int(self.sample * HASH_SPACE)
            for seg in self.segments:
                rows = self.db.execute(f"SELECT id, row FROM seg_{seg} WHERE h >= ?", (cut,)).fetchall()  # noqa: S608
                gone = [(id_hash(i), i) for i, r in rows if not self.decode(r)["flags"][0] & FLAGGED]
                self.db.executemany(f"DELETE FROM seg_{seg} WHERE h = ? AND id = ?", gone)  # noqa: S608
                self.not_kept += len(gone)
            self.db.commit()
            self.bytes = self.used_bytes()
        while self.bytes > self.budget_bytes and len(self.segments) > 1:
            self.db.execute(f"DROP TABLE seg_{self.segments[0]}")
            self.segments = self.segments[1:]
            self.early_drops += 1
            self.db.commit()
            self.bytes = self.used_bytes()

    # -- labelled rows (the training set outlives a restart)
    def put_joined(self, ids: Sequence[str], labels: Sequence[float], rows: np.ndarray) -> None:
        values = [
            (id_hash(i), i, float(r["ts"]), float(y), r.tobytes())
            for i, y, r in zip(ids, labels, rows, strict=True)
        ]
        self.db.executemany("INSERT OR REPLACE INTO joined VALUES (?, ?, ?, ?, ?)", values)
        self.db.commit()

    def forget_joined(self, ids: Sequence[str]) -> None:
        self.db.executemany("DELETE FROM joined WHERE h = ? AND id = ?", [(id_hash(i), i) for i in ids])
        self.db.commit()

    def load_joined(self, limit: int) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The newest ``limit`` labelled rows within the horizon: (ids, labels, rows), oldest first."""
        q = "SELECT id, label, row FROM joined ORDER BY ts DESC LIMIT ?"
        got = self.db.execute(q, (limit,)).fetchall()
        rows = self.decode([r for _, _, r in got]) if got else np.zeros(0, dtype=self.dtype)
        keep = rows["ts"] >= self.watermark - self.horizon_ms
        order = np.argsort(rows["ts"][keep], kind="stable")
        ids = [got[k][0] for k in np.flatnonzero(keep)[order]]
        labels = np.array([got[k][1] for k in np.flatnonzero(keep)[order]], dtype=np.float32)
        return ids, labels, rows[keep][order]

    def stats(self) -> dict[str, Any]:
        return {
            "log_bytes": self.bytes,
            "log_budget_bytes": self.budget_bytes,
            "log_sample": self.sample,
            "log_segments": len(self.segments),
            "log_segments_dropped_early": self.early_drops,
            "log_not_kept": self.not_kept,
            "horizon_ms": self.horizon_ms,
        }

    def close(self) -> None:
        self.commit(force=True)
        self.db.close()
