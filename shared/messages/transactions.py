"""``transactions`` (key: the id): what users send to be scored.

``{"id": str, "features": {name: number}, "ts": epoch ms (optional), "bundle": str
(optional: refused unless it is the reader's)}``; for a bundle with a schema
(:mod:`shared.schema`) a feature may be ``null`` and a category is a string.

The scorer decodes a whole batch at once (:func:`decode_transactions`): good records become
rows of a float32 matrix, every other record a :class:`Reject` with its position, so each
input ends as exactly one row or one reason. The fast path checks structure per record and
values for the batch at once (numpy), after msgspec has tried the whole batch against a
typed schema (the usual case, every record good: twice as fast); a batch with a bad value
is decoded again record by record (:func:`decode_transactions_checked`, the reference the
tests hold both fast paths to), so the result never depends on which path ran.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain
from operator import itemgetter
from typing import Any

import msgspec
import numpy as np
import orjson

from shared.messages.record import MAX_RECORD_BYTES, load_object, size_reject
from shared.messages.reject import Reject, RejectCode
from shared.schema import ABSURD, Schema

__all__ = [
    "ABSURD",
    "MAX_RECORD_BYTES",
    "NO_CHECKS",
    "Checks",
    "RecentIds",
    "Transaction",
    "TransactionBatch",
    "decode_transactions",
    "decode_transactions_checked",
    "encode_transaction",
]


@dataclass(frozen=True)
class Transaction:
    id: str
    features: Mapping[str, float | str | None]  # str and None: fields of a bundle with a schema
    ts: float | None = None  # event time, epoch ms
    bundle: str | None = None  # the bundle it is meant for, when the sender says

    @classmethod
    def from_row(
        cls, tx_id: str, names: Sequence[str], row: Sequence[float | str | None], ts: float | None = None
    ) -> Transaction:
        return cls(tx_id, dict(zip(names, row, strict=True)), ts)


def encode_transaction(tx: Transaction) -> bytes:
    rec: dict[str, object] = {"id": tx.id, "features": dict(tx.features)}
    if tx.ts is not None:
        rec["ts"] = tx.ts
    if tx.bundle is not None:
        rec["bundle"] = tx.bundle
    return orjson.dumps(rec)


@dataclass
class TransactionBatch:
    """A decoded batch: the good records as rows, the others with their reasons."""

    ids: list[str]
    X: np.ndarray  # (n, d) float32, columns in the bundle's feature order
    ts: list[float | None]  # event times (epoch ms) when given
    index: list[int]  # position of each good record in the input
    rejected: list[tuple[int, Reject]]  # (position in the input, why)


@dataclass(frozen=True)
class Checks:
    """What a batch is checked against besides the features: record keys (UTF-8 text when
    present), the bundle a record names (when it names one), and ids decided recently."""

    keys: Sequence[bytes | None] | None = None  # the record keys, aligned with the values
    bundle: str | None = None  # this service's bundle id
    recent: Container[str] = ()  # ids already decided (a duplicate of one is not re-scored)


NO_CHECKS = Checks()


class RecentIds:
    """At least the last ``capacity`` ids decided (at most twice as many), for refusing a
    transaction sent twice. Two generations of sets: ids go into the young one; when it
    holds ``capacity`` it becomes the old one and the old one is forgotten, so adding and
    checking a batch are a set operation each (no work per id in Python).

    >>> recent = RecentIds(2).add(["a", "b"]).add(["c"]).add(["d"])
    >>> ("a" in recent, "b" in recent, "c" in recent, "d" in recent)
    (False, False, True, True)
    >>> recent.isdisjoint(["x", "c"]), recent.isdisjoint(["x", "y"])
    (False, True)
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._young: set[str] = set()
        self._old: set[str] = set()

    def __contains__(self, tx_id: object) -> bool:
        return tx_id in self._young or tx_id in self._old

    def __len__(self) -> int:
        return len(self._young | self._old)

    def isdisjoint(self, ids: Iterable[str]) -> bool:
        """True when none of ``ids`` was decided recently."""
        return self._young.isdisjoint(ids) and self._old.isdisjoint(ids)

    def add(self, ids: Sequence[str]) -> RecentIds:
        if self.capacity <= 0:
            return self
        self._young.update(ids)
        if len(self._young) >= self.capacity:
            self._old, self._young = self._young, set()
        return self


# -- the reference: record by record, every check in Python ---------------------------------


def _raw_reject(raw: bytes | None, key: bytes | None) -> Reject | None:
    """Why a record is refused before it is parsed: its size or its key."""
    too_large = size_reject(raw)
    if too_large is not None:
        return too_large
    if key is not None and not key.isascii():
        try:
            key.decode()
        except UnicodeDecodeError:
            return Reject(RejectCode.KEY, "key is not UTF-8")
    return None


def _id_reject(rec: dict[str, Any], seen: set[str], checks: Checks) -> Reject | None:
    tx_id = rec.get("id")
    if not isinstance(tx_id, str) or not tx_id:
        return Reject(RejectCode.SCHEMA, "missing or non-string 'id'")
    if tx_id in seen:
        return Reject(RejectCode.DUPLICATE, "duplicate id in batch")
    if tx_id in checks.recent:
        return Reject(RejectCode.DUPLICATE, "duplicate id: already decided")
    named = rec.get("bundle")
    if named is not None and checks.bundle is not None and named != checks.bundle:
        text = f"unknown bundle {str(named)[:64]!r} (this scorer runs {checks.bundle!r})"
        return Reject(RejectCode.BUNDLE, text)
    return None


def _features_reject(rec: dict[str, Any], features: Sequence[str]) -> Reject | None:
    feats = rec.get("features")
    if not isinstance(feats, dict):
        return Reject(RejectCode.SCHEMA, "missing 'features' object")
    missing = [f for f in features if f not in feats]
    if missing:
        return Reject(RejectCode.SCHEMA, f"missing feature(s): {', '.join(missing[:5])}")
    if len(feats) != len(features):
        extra = sorted(set(feats) - set(features))
        return Reject(RejectCode.SCHEMA, f"unknown feature(s): {', '.join(map(str, extra[:5]))}")
    for f in features:
        v = feats[f]
        if isinstance(v, bool) or not isinstance(v, int | float):
            return Reject(RejectCode.VALUE, f"feature {f!r} is not a number")
        if not math.isfinite(v) or abs(v) > ABSURD:
            return Reject(RejectCode.VALUE, f"feature {f!r} is not finite or absurd: {v!r}")
    ts = rec.get("ts")
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int | float)):
        return Reject(RejectCode.VALUE, "'ts' is not a number")
    return None


def _checked_record(
    raw: bytes | None, features: Sequence[str] | Schema, seen: set[str], checks: Checks
) -> dict[str, Any] | Reject:
    """The record, or why it is refused: every check, in Python."""
    rec = load_object(raw)
    if isinstance(rec, Reject):
        return rec
    bad_id = _id_reject(rec, seen, checks)
    if bad_id is not None:
        return bad_id
    if isinstance(features, Schema):
        return _schema_reject(rec, features) or rec
    return _features_reject(rec, features) or rec


def decode_transactions_checked(
    values: Sequence[bytes | None], features: Sequence[str] | Schema, checks: Checks = NO_CHECKS
) -> TransactionBatch:
    """Record by record, every check in Python: the slow reference for the fast path, and
    the path of a bundle with a schema (``features`` a :class:`~shared.schema.Schema`:
    ``null`` anywhere and strings for categories, encoded into the model's inputs)."""
    schema = features if isinstance(features, Schema) else None
    names = () if isinstance(features, Schema) else tuple(features)
    width = len(schema.columns) if schema is not None else len(names)
    out = TransactionBatch([], np.zeros((0, width), dtype=np.float32), [], [], [])
    good: list[Mapping[str, Any]] = []
    seen: set[str] = set()
    for i, raw in enumerate(values):
        early = _raw_reject(raw, checks.keys[i] if checks.keys is not None else None)
        rec = early or _checked_record(raw, features, seen, checks)
        if isinstance(rec, Reject):
            out.rejected.append((i, rec))
            continue
        seen.add(rec["id"])
        out.ids.append(rec["id"])
        good.append(rec["features"])
        out.ts.append(rec.get("ts"))
        out.index.append(i)
    if schema is not None:
        out.X = schema.encode_records(good)
    else:
        out.X = np.array([[f[n] for n in names] for f in good], dtype=np.float32).reshape(len(good), width)
    return out


def _schema_reject(rec: dict[str, Any], schema: Schema) -> Reject | None:
    feats = rec.get("features")
    if not isinstance(feats, dict):
        return Reject(RejectCode.SCHEMA, "missing 'features' object")
    problem = schema.problem(feats)
    if problem is not None:
        return Reject(RejectCode.SCHEMA if problem[0] == "schema" else RejectCode.VALUE, problem[1])
    ts = rec.get("ts")
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int | float)):
        return Reject(RejectCode.VALUE, "'ts' is not a number")
    return None


# -- the fast path ---------------------------------------------------------------------------

_NUMBER = {float, int}
_OPTIONAL_NUMBER = {float, int, type(None)}


def _early_rejects(values: Sequence[bytes | None], keys: Sequence[bytes | None] | None) -> dict[int, Reject]:
    """Position -> reason for the records refused before parsing (usually none)."""
    out: dict[int, Reject] = {}
    if max(map(len, filter(None, values)), default=0) > MAX_RECORD_BYTES or (
        keys is not None and not all(k is None or k.isascii() for k in keys)
    ):
        for i, raw in enumerate(values):
            reject = _raw_reject(raw, keys[i] if keys is not None else None)
            if reject is not None:
                out[i] = reject
    return out


@lru_cache(maxsize=16)
def _typed_decoder(features: tuple[str, ...]) -> Callable[[bytes], Any]:
    """A msgspec decoder of one transaction with exactly these features, each a number: the
    schema is checked in C while parsing."""
    names = [f"f{i}" for i in range(len(features))]  # the features' names need not be identifiers
    feats = msgspec.defstruct(
        "Features",
        [(n, float) for n in names],
        rename=dict(zip(names, features, strict=True)),
        forbid_unknown_fields=True,
    )
    tx = msgspec.defstruct(
        "Tx", [("id", str), ("features", feats), ("ts", int | float | None, None), ("bundle", Any, None)]
    )
    return msgspec.json.Decoder(tx).decode


def _decode_typed(
    values: Sequence[bytes | None], features: Sequence[str], checks: Checks
) -> TransactionBatch | None:
    """The batch when every record is good (the usual case), decoded by msgspec; None as soon
    as one is not (then the record-by-record paths find which and why)."""
    decode = _typed_decoder(tuple(features))
    try:
        txs = [decode(v) for v in values]  # type: ignore[arg-type]
    except (msgspec.DecodeError, TypeError):
        return None
    ids = [t.id for t in txs]
    recent, bundle = checks.recent, checks.bundle
    isdisjoint = getattr(recent, "isdisjoint", None)
    if (
        not all(ids)
        or len(set(ids)) != len(ids)
        or not (isdisjoint(ids) if isdisjoint is not None else not any(i in recent for i in ids))
        or (bundle is not None and not all(t.bundle is None or t.bundle == bundle for t in txs))
    ):
        return None
    astuple = msgspec.structs.astuple
    X = np.array([astuple(t.features) for t in txs], dtype=np.float64).reshape(len(txs), len(features))
    if not (np.abs(X) <= ABSURD).all():
        return None
    return TransactionBatch(ids, X.astype(np.float32), [t.ts for t in txs], list(range(len(txs))), [])


def decode_transactions(
    values: Sequence[bytes | None], features: Sequence[str] | Schema, checks: Checks = NO_CHECKS
) -> TransactionBatch:
    """Decode a batch: good rows into ``X``; every other record into ``rejected`` with a reason.

    Three paths, each held to the next: msgspec on a batch of good records; on any other
    batch orjson record by record, with the values checked at once; on a batch with a bad
    value, the reference (:func:`decode_transactions_checked`). A bundle's schema
    (``features`` a :class:`~shared.schema.Schema`) takes the reference."""
    if isinstance(features, Schema):
        return decode_transactions_checked(values, features, checks)
    early = _early_rejects(values, checks.keys)
    typed = None if early or not values else _decode_typed(values, features, checks)
    if typed is not None:
        return typed
    d = len(features)
    get = itemgetter(*features) if d > 1 else (lambda f: (f[features[0]],))
    ids: list[str] = []
    rows: list[tuple[Any, ...]] = []
    ts: list[Any] = []
    index: list[int] = []
    rejected: list[tuple[int, Reject]] = []
    seen: set[str] = set()
    recent, bundle = checks.recent, checks.bundle
    loads = orjson.loads
    for i, raw in enumerate(values):
        if early and i in early:
            rejected.append((i, early[i]))
            continue
        try:
            rec = loads(raw)  # type: ignore[arg-type]
            tx_id = rec["id"]
            feats = rec["features"]
            row = get(feats)
            named = rec.get("bundle")
            ok = (
                type(tx_id) is str
                and tx_id
                and type(feats) is dict
                and len(feats) == d
                and tx_id not in seen
                and tx_id not in recent
                and (named is None or bundle is None or named == bundle)
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, IndexError, AttributeError):
            ok = False
        if not ok:
            found = _checked_record(raw, features, seen, checks)
            rejected.append(
                (i, found if isinstance(found, Reject) else Reject(RejectCode.OTHER, "unreadable record"))
            )
            continue
        seen.add(tx_id)
        ids.append(tx_id)
        rows.append(row)
        ts.append(rec.get("ts"))
        index.append(i)
    return _values_checked(
        values, features, checks, TransactionBatch(ids, np.empty(0), ts, index, rejected), rows
    )


def _values_checked(
    values: Sequence[bytes | None],
    features: Sequence[str],
    checks: Checks,
    batch: TransactionBatch,
    rows: list[tuple[Any, ...]],
) -> TransactionBatch:
    """The batch's values checked at once; any bad one sends the batch to the reference."""
    kinds = set(map(type, chain.from_iterable(rows)))
    if not kinds <= _NUMBER or not set(map(type, batch.ts)) <= _OPTIONAL_NUMBER:
        return decode_transactions_checked(values, features, checks)
    X = np.array(rows, dtype=np.float64).reshape(len(rows), len(features))
    if not (np.abs(X) <= ABSURD).all():  # NaN compares False too
        return decode_transactions_checked(values, features, checks)
    batch.X = X.astype(np.float32)
    return batch
