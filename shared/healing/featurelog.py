"""The feature log: every transaction's features by id, kept on disk for a label horizon.

Labels arrive minutes to weeks after their transaction; to learn from one, the healer
needs the features it was decided on. The log keeps each row (features, event time, the
decision made on it) in RocksDB (``rocksdict``), in *segments* of ``horizon / segments`` of
event time, one column family each, as Kafka Streams' window stores do: a segment older
than the horizon is dropped whole, so expiry costs nothing per row. A key is the id's hash
then the id, so the sample below is a key range.

**The byte budget.** Below ``budget_bytes`` of data (the column families' tables and
memtables) every row is kept. When the log reaches it, the sample halves: rows whose id
hashes into the upper half of what was kept are deleted (a scan of that key range) and new
ones are no longer written, except rows the scorer flagged or a rule fired on, which are
always kept. The sample is deterministic: :meth:`sampled` says at once whether a label's
transaction can be in the log, and what was not kept is counted. When flagged rows alone
exceed the budget, the oldest segments go before the horizon. Why RocksDB and not SQLite:
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
>>> log.close()
"""

from __future__ import annotations

import hashlib
import math
import shutil
import sqlite3
import struct
import tempfile
import time
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rocksdict import Options, Rdict, WriteBatch

FLAGGED = 1  # the scorer flagged it or a rule fired: kept whatever the sample
FRAUD = 2  # the live adapter's verdict
SHADOW_FRAUD = 4  # the frozen shadow's verdict
DECIDED = 8  # a decision was seen (the two bits above mean something)
SHARE_SHIFT = 4  # the upper four flag bits: k, an unflagged row kept by a sample of 2 ** -k
HASH_SPACE = 1 << 32
MIN_SAMPLE = 1 / 1024  # the sample never falls below this (flagged rows aside)
COMMIT_EVERY_S = 0.5  # the budget is checked at most this often
WRITE_BUFFER = 8 << 20  # a segment's memtable: writes go to the newest, older ones are flushed
ALL_BUFFERS = 32 << 20  # every memtable together (RocksDB flushes the largest past this)
JOINED = "joined"  # the column family of labelled rows (the training set)
BY_TIME = "by_time"  # with ``by_time``: the logged ids by event time (empty values)
_F8 = struct.Struct("<dd")  # a joined row's event time and label, before the row


def id_hash(tx_id: str) -> int:
    """A stable 32-bit hash of a transaction id: what the sample is drawn by."""
    return int.from_bytes(_digest(tx_id), "big")


def _digest(tx_id: str) -> bytes:
    return hashlib.blake2b(tx_id.encode(), digest_size=4).digest()


def _keys(ids: Sequence[str]) -> list[bytes]:
    """Each id's key: its hash (big-endian: the sample is a key range), then the id."""
    blake = hashlib.blake2b
    return [blake(b, digest_size=4).digest() + b for b in (i.encode() for i in ids)]


def _share_k(share: float) -> int:
    """``k`` with ``share == 2 ** -k`` (samples halve from 1, so every share is one)."""
    return min(15, max(0, round(-math.log2(share))))


def _with_share(flags: np.ndarray, k: np.ndarray | int) -> np.ndarray:
    """``flags`` with ``k`` in the share bits (the low four bits kept)."""
    return (flags & ((1 << SHARE_SHIFT) - 1)) | (np.asarray(k, dtype=flags.dtype) << SHARE_SHIFT)


def inverse_share(rows: np.ndarray) -> np.ndarray:
    """Per row, the inverse of the share of its kind the log kept (1 for a flagged row or
    one joined from memory): an implied-genuine or labelled row from a sampled log stands
    for that many like it, where every flagged row was kept."""
    k = np.where(rows["flags"] & FLAGGED, 0, rows["flags"] >> SHARE_SHIFT)
    return np.ldexp(1.0, k.astype(np.int32)).astype(np.float32)


def _time_key(ts: float) -> bytes:
    """An event time as a key prefix that sorts as the time does (from 0 on)."""
    return struct.pack(">d", max(float(ts), 0.0))


def _time_of(key: bytes) -> float:
    return float(struct.unpack_from(">d", key)[0])


def row_dtype(n_features: int) -> np.dtype[Any]:
    """One logged row: event time (ms), flag bits, the adapter version, the features."""
    return np.dtype([("ts", "<f8"), ("flags", "u1"), ("version", "<i4"), ("x", "<f4", (n_features,))])


def _options() -> Options:
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.create_missing_column_families(True)
    opts.set_write_buffer_size(WRITE_BUFFER)
    opts.set_db_write_buffer_size(ALL_BUFFERS)
    opts.set_keep_log_file_num(2)
    return opts


class FeatureLog:
    def __init__(
        self,
        path: str | Path | None,
        n_features: int,
        horizon_ms: float,
        budget_bytes: int,
        segments: int = 8,
        by_time: bool = False,
    ) -> None:
        """``path``: the log's directory; None keeps it in a temporary one, removed on
        :meth:`close` (offline experiments, tests). ``by_time``: also index the ids by event
        time (:meth:`ids_between`; a second, small write a row). A SQLite log an older
        version left at ``path`` with the suffix ``.sqlite`` is read in once
        (:meth:`import_sqlite`)."""
        if horizon_ms <= 0 or budget_bytes <= 0 or segments < 1:
            raise ValueError("horizon_ms, budget_bytes and segments must be positive")
        self._tmp = tempfile.mkdtemp(prefix="selfheal-log-") if path is None else None
        self._closed = False
        self.path = Path(path) if path is not None else Path(str(self._tmp))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.dtype = row_dtype(n_features)
        self.horizon_ms, self.budget_bytes = float(horizon_ms), int(budget_bytes)
        self.segment_ms = self.horizon_ms / segments
        opts = _options()
        names = Rdict.list_cf(str(self.path), opts) if (self.path / "CURRENT").exists() else ["default"]
        families = {n: _options() for n in names if n != "default"} | {JOINED: _options()}
        self.by_time = by_time
        if by_time:
            families[BY_TIME] = _options()
        self.db = Rdict(str(self.path), opts, column_families=families)
        self.segments: list[int] = sorted(int(n[4:]) for n in names if n.startswith("seg_"))
        self._cf: dict[str, Any] = {}  # column family views and handles, by name
        self.sample = self._meta("sample", 1.0)  # the share of unflagged rows kept
        self.watermark = self._meta("watermark", float("-inf"))  # newest event time seen
        self.implied_to = self._meta("implied_to", float("-inf"))  # a label join's implied genuine, up to
        self.not_kept = 0  # unflagged rows left out by the sample (this process)
        self.rate_sample = 1.0  # the share the healer's input rate leaves room for (shared.healing.log_rate)
        self.rate_not_kept = 0  # ... of ``not_kept``, rows only the rate sample left out
        self.write_seconds, self.written = 0.0, 0  # time spent writing rows, and how many were written
        self._checked = 0.0
        self.dropped_segments = 0  # segments past the horizon
        self.early_drops = 0  # segments dropped before the horizon, to keep to the budget
        if self._tmp is not None:  # an offline log nobody closes is removed with its object
            self._remove = weakref.finalize(self, _remove, self.db, self._tmp)
        old = self.path.with_suffix(".sqlite")
        if path is not None and old.exists():
            self.import_sqlite(old)
        self.bytes = self.used_bytes()  # as of the last check (stats read this, not the store)

    def _meta(self, key: str, default: float) -> float:
        raw = self.db.get(b"meta:" + key.encode())
        return float(struct.unpack("<d", raw)[0]) if raw is not None else default

    def _set_meta(self, key: str, value: float) -> None:
        self.db.put(b"meta:" + key.encode(), struct.pack("<d", value))

    def set_implied_to(self, ts: float) -> None:
        """The join has implied genuine every transaction up to ``ts`` (kept for a restart)."""
        self.implied_to = ts
        self._set_meta("implied_to", ts)

    def _family(self, name: str) -> Any:
        """The column family ``name`` (created if new): its view."""
        if name not in self._cf:
            if name.startswith("seg_") and int(name[4:]) not in self.segments:
                self.db.create_column_family(name, _options())
                self.segments = sorted([*self.segments, int(name[4:])])
            self._cf[name] = (self.db.get_column_family(name), self.db.get_column_family_handle(name))
        return self._cf[name][0]

    def _handle(self, name: str) -> Any:
        self._family(name)
        return self._cf[name][1]

    def _drop(self, seg: int) -> None:
        name = f"seg_{seg}"
        self._cf.pop(name, None)
        self.db.drop_column_family(name)
        self.segments = [s for s in self.segments if s != seg]

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

    def read(self, blobs: bytes | Iterable[bytes]) -> np.ndarray:
        """Logged rows as they stand now: an unflagged row's sample share is the smaller of
        the one it was written under and the byte budget's since (halving deletes rows
        written under a larger one). :func:`inverse_share` weighs a row by it."""
        rows = self.decode(blobs).copy()
        k_now = _share_k(self.sample)
        unflagged = (rows["flags"] & FLAGGED) == 0
        k = np.maximum(rows["flags"] >> SHARE_SHIFT, k_now)
        rows["flags"] = np.where(unflagged, _with_share(rows["flags"], k), rows["flags"])
        return rows

    @property
    def kept_share(self) -> float:
        """The share of unflagged rows written now: the byte budget's sample or the rate's."""
        return min(self.sample, self.rate_sample)

    def sampled(self, tx_id: str) -> bool:
        """Whether an unflagged transaction with this id is kept by the sample now."""
        return id_hash(tx_id) < self.kept_share * HASH_SPACE

    def put(self, ids: Sequence[str], rows: np.ndarray) -> int:
        """Log rows (the sample and the horizon permitting); returns how many were written.
        A row logged again under the same id replaces the first."""
        if not len(rows):
            return 0
        t0 = time.perf_counter()
        keys = _keys(ids)
        hashes = np.frombuffer(b"".join(k[:4] for k in keys), dtype=">u4")
        flagged = (rows["flags"] & FLAGGED).astype(bool)
        share = self.kept_share
        wanted = (hashes < share * HASH_SPACE) | flagged
        if self.rate_sample < self.sample:
            self.rate_not_kept += int(((hashes < self.sample * HASH_SPACE) & ~wanted).sum())
        keep = wanted & (rows["ts"] >= self.watermark - self.horizon_ms)
        self.not_kept += int((~wanted).sum())
        segments = np.maximum(rows["ts"] // self.segment_ms, 0).astype(np.int64)  # before 1970: the first
        if share < 1:  # each unflagged row says which share of its kind it stands for
            rows = rows.copy()
            rows["flags"][~flagged] = _with_share(rows["flags"][~flagged], _share_k(share))
        blob, size = rows.tobytes(), rows.dtype.itemsize
        batch = WriteBatch(raw_mode=True)
        put = batch.put
        for seg in np.unique(segments[keep]).tolist():
            handle = self._handle(f"seg_{seg}")
            for k in np.flatnonzero(keep & (segments == seg)).tolist():
                put(keys[k], blob[k * size : (k + 1) * size], handle)
        if self.by_time:
            handle, stamps = self._handle(BY_TIME), rows["ts"].tolist()
            for k in np.flatnonzero(keep).tolist():
                put(_time_key(stamps[k]) + keys[k][4:], b"", handle)
        self.db.write(batch)
        written = int(keep.sum())
        self.write_seconds += time.perf_counter() - t0
        self.written += written
        self.advance(float(rows["ts"].max()))
        self.commit()
        return written

    def commit(self, force: bool = False) -> None:
        """Every write is in the write-ahead log when :meth:`put` returns; this checks the
        budget, at most every ``COMMIT_EVERY_S`` (``force``: now, and the WAL synced)."""
        now = time.monotonic()
        if force or now - self._checked >= COMMIT_EVERY_S:
            if force:
                self.db.flush_wal(True)
            self._checked = now
            self.enforce_budget()

    def get(self, ids: Sequence[str]) -> dict[str, bytes]:
        """The logged rows of these ids (an id not logged is absent), newest segment first."""
        found: dict[str, bytes] = {}
        todo = dict(zip(ids, _keys(ids), strict=True))  # id -> key, computed once for every segment
        for seg in reversed(self.segments):
            if not todo:
                break
            got = self._family(f"seg_{seg}")[list(todo.values())]
            found.update({i: v for i, v in zip(todo, got, strict=True) if v is not None})
            todo = {i: k for i, k in todo.items() if i not in found}
        return found

    def advance(self, ts: float) -> int:
        """Event time has reached ``ts``: drop the segments wholly older than the horizon."""
        if ts <= self.watermark:
            return 0
        self.watermark = ts
        self._set_meta("watermark", ts)
        old = [s for s in self.segments if (s + 1) * self.segment_ms <= ts - self.horizon_ms]
        for seg in old:
            self._drop(seg)
        self.dropped_segments += len(old)
        if old:
            self._forget_joined_before(ts - self.horizon_ms)
            if self.by_time:
                self._family(BY_TIME).delete_range(_time_key(0.0), _time_key(ts - self.horizon_ms))
        return len(old)

    def ids_between(self, after: float, until: float) -> list[str]:
        """The ids logged with an event time in ``(after, until]``, oldest first (with
        ``by_time``; a row the sample or the budget removed since may still be named)."""
        if not self.by_time:
            raise ValueError("this log does not index ids by time (by_time=False)")
        out: list[str] = []
        for key in self._family(BY_TIME).keys(from_key=_time_key(after)):
            ts = _time_of(key)
            if ts > until:
                break
            if ts > after:
                out.append(key[8:].decode())
        return out

    # -- the budget
    def used_bytes(self) -> int:
        """Bytes of data the log holds: every column family's tables and memtables."""
        total = 0
        for name in [*(f"seg_{s}" for s in self.segments), JOINED, *([BY_TIME] if self.by_time else [])]:
            cf = self._family(name)
            for prop in ("rocksdb.total-sst-files-size", "rocksdb.size-all-mem-tables"):
                total += int(cf.property_int_value(prop) or 0)
        return total

    def _shrink(self, seg: int) -> None:
        """Flush and compact a segment so that what was deleted leaves the disk."""
        cf = self._family(f"seg_{seg}")
        cf.flush()
        cf.compact_range(None, None)

    def enforce_budget(self) -> None:
        """Over the budget: halve the sample, deleting the unflagged rows it leaves out; at the
        smallest sample (flagged rows alone over the budget), drop the oldest segments: the
        horizon shortens rather than the disk filling (``early_drops``)."""
        self.bytes = self.used_bytes()
        while self.bytes > self.budget_bytes and self.sample > MIN_SAMPLE:
            self.sample /= 2
            self._set_meta("sample", self.sample)
            cut = int(self.sample * HASH_SPACE).to_bytes(4, "big") if self.sample < 1 else None
            for seg in self.segments:
                name = f"seg_{seg}"
                batch, handle = WriteBatch(raw_mode=True), self._handle(name)
                gone = 0
                for key, row in self._family(name).items(from_key=cut):
                    if not self.decode(row)["flags"][0] & FLAGGED:
                        batch.delete(key, handle)
                        gone += 1
                self.db.write(batch)
                self.not_kept += gone
                self._shrink(seg)
            self.bytes = self.used_bytes()
        while self.bytes > self.budget_bytes and len(self.segments) > 1:
            self._drop(self.segments[0])
            self.early_drops += 1
            self.bytes = self.used_bytes()

    # -- labelled rows (the training set outlives a restart)
    def put_joined(self, ids: Sequence[str], labels: Sequence[float], rows: np.ndarray) -> None:
        batch, handle = WriteBatch(raw_mode=True), self._handle(JOINED)
        for key, y, r in zip(_keys(ids), labels, rows, strict=True):
            batch.put(key, _F8.pack(float(r["ts"]), float(y)) + r.tobytes(), handle)
        self.db.write(batch)

    def forget_joined(self, ids: Sequence[str]) -> None:
        batch, handle = WriteBatch(raw_mode=True), self._handle(JOINED)
        for key in _keys(ids):
            batch.delete(key, handle)
        self.db.write(batch)

    def _forget_joined_before(self, ts: float) -> None:
        batch, handle = WriteBatch(raw_mode=True), self._handle(JOINED)
        for key, value in self._family(JOINED).items():
            if _F8.unpack_from(value)[0] < ts:
                batch.delete(key, handle)
        self.db.write(batch)

    def load_joined(self, limit: int) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The newest ``limit`` labelled rows within the horizon: (ids, labels, rows), oldest first."""
        got = [(k[4:].decode(), *_F8.unpack_from(v), v[_F8.size :]) for k, v in self._family(JOINED).items()]
        got = [g for g in got if g[1] >= self.watermark - self.horizon_ms]
        got = sorted(got, key=lambda g: g[1])[-limit:] if limit > 0 else []
        rows = self.decode([g[3] for g in got]) if got else np.zeros(0, dtype=self.dtype)
        return [g[0] for g in got], np.array([g[2] for g in got], dtype=np.float32), rows

    def import_sqlite(self, path: Path) -> int:
        """Read in the SQLite log an older version kept (segments, training set, sample and
        watermark), then rename it ``*.imported``; returns the rows read."""
        old = sqlite3.connect(str(path))
        try:
            meta = dict(old.execute("SELECT key, value FROM meta").fetchall())
            tables = [n for (n,) in old.execute("SELECT name FROM sqlite_master WHERE name GLOB 'seg_*'")]
            n = 0
            for table in tables:
                rows = old.execute(f"SELECT id, row FROM {table}").fetchall()  # noqa: S608
                batch, handle = WriteBatch(raw_mode=True), self._handle(table)
                for key, (_, row) in zip(_keys([tx_id for tx_id, _ in rows]), rows, strict=True):
                    batch.put(key, row, handle)
                self.db.write(batch)
                n += len(rows)
            joined = old.execute("SELECT id, label, row FROM joined").fetchall()
            if joined:
                labelled = self.decode([r for _, _, r in joined])
                self.put_joined([i for i, _, _ in joined], [y for _, y, _ in joined], labelled)
        finally:
            old.close()
        self.sample = float(meta.get("sample", self.sample))
        self._set_meta("sample", self.sample)
        self.advance(float(meta.get("watermark", self.watermark)))
        path.rename(path.with_suffix(".sqlite.imported"))
        return n

    def stats(self) -> dict[str, Any]:
        return {
            "log_bytes": self.bytes,
            "log_budget_bytes": self.budget_bytes,
            "log_sample": self.sample,
            "log_segments": len(self.segments),
            "log_segments_dropped_early": self.early_drops,
            "log_not_kept": self.not_kept,
            "log_rate_sample": self.rate_sample,
            "log_rate_not_kept": self.rate_not_kept,
            "horizon_ms": self.horizon_ms,
        }

    def close(self) -> None:
        """Sync and close (idempotent); a temporary log is removed."""
        if self._closed:
            return
        self.commit(force=True)
        self._cf.clear()
        self._closed = True
        if self._tmp is not None:
            self._remove()  # runs once: not again when the object goes
        else:
            self.db.close()


def _remove(db: Rdict, folder: str) -> None:
    """Close a temporary log and delete its folder."""
    try:
        db.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
