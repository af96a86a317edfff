"""Message formats on the topics, decoded and encoded with orjson.

transactions  key: id   ``{"id": str, "features": {name: number}, "ts": epoch ms (optional),
                          "bundle": str (optional: refused unless it is the scorer's)}``
decisions     key: id   ``{"id", "score", "fraud", "threshold", "adapter_version", "bundle",
                          "rules", "conflict", "shadow_score", "latency_ms"}``
labels        key: id   ``{"id": str, "label": 0 or 1}``
drift-alerts  key: feature or detector
              ``{"detector", "feature", "statistic", "threshold", "state", "ts", ...}``
              drift: detector ``fidi``/``conflicts``, state ``drift``/``recovered``;
              a scorer refusing an adapter: detector ``scorer``, feature ``adapter-weights``,
              state ``rejected``, with ``reason`` and ``offset``; the healer rolling back:
              detector ``healer``, feature ``adapter``, state ``rollback``, with
              ``from_version``, ``to_version`` and ``reason``

A record that cannot be used is never dropped silently: the decoders return it with a
reason, and the services send it to ``transactions.dlq`` with the original bytes and key,
and headers naming the reason and where it came from (see
:func:`shared.kafka.clients.dead_letter`).
"""

from __future__ import annotations

import math
from collections.abc import Container, Sequence
from dataclasses import dataclass
from itertools import chain, islice
from operator import itemgetter
from typing import Any

import numpy as np
import orjson

ABSURD = 1e12  # larger feature values are rejected as corrupt
MAX_RECORD_BYTES = 64 * 1024  # a transaction is ~0.6 kB; larger records are refused unparsed


@dataclass
class Decoded:
    ids: list[str]
    X: np.ndarray  # (n, d) float32
    ts: list[float | None]  # producer timestamps (epoch ms) when given
    index: list[int]  # position of each good record in the input
    rejected: list[tuple[int, str]]  # (position in the input, reason)


def _load_object(raw: bytes | None) -> dict[str, Any] | str:
    """The JSON object in ``raw``, or the reason there is none."""
    if not raw:
        return "empty message"
    try:
        rec = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return f"not JSON: {exc.msg}"
    return rec if isinstance(rec, dict) else "value is not a JSON object"


@dataclass(frozen=True)
class Checks:
    """What a batch is checked against besides the features: record keys (UTF-8 text when
    present), the bundle a record names (when it names one), and ids decided recently."""

    keys: Sequence[bytes | None] | None = None  # the record keys, aligned with the values
    bundle: str | None = None  # this service's bundle id
    recent: Container[str] = ()  # ids already decided (a duplicate of one is not re-scored)


NO_CHECKS = Checks()


def _raw_reason(raw: bytes | None, key: bytes | None) -> str | None:
    """Why a record is refused before it is parsed: its size or its key."""
    if raw is not None and len(raw) > MAX_RECORD_BYTES:
        return f"record too large: {len(raw)} bytes (limit {MAX_RECORD_BYTES})"
    if key is not None and not key.isascii():
        try:
            key.decode()
        except UnicodeDecodeError:
            return "key is not UTF-8"
    return None


def _reject_reason(
    rec: dict[str, Any], features: Sequence[str], seen: set[str], checks: Checks
) -> str | None:
    tx_id = rec.get("id")
    if not isinstance(tx_id, str) or not tx_id:
        return "missing or non-string 'id'"
    if tx_id in seen:
        return "duplicate id in batch"
    if tx_id in checks.recent:
        return "duplicate id: already decided"
    named = rec.get("bundle")
    if named is not None and checks.bundle is not None and named != checks.bundle:
        return f"unknown bundle {str(named)[:64]!r} (this scorer runs {checks.bundle!r})"
    feats = rec.get("features")
    if not isinstance(feats, dict):
        return "missing 'features' object"
    missing = [f for f in features if f not in feats]
    if missing:
        return f"missing feature(s): {', '.join(missing[:5])}"
    if len(feats) != len(features):
        extra = sorted(set(feats) - set(features))
        return f"unknown feature(s): {', '.join(map(str, extra[:5]))}"
    for f in features:
        v = feats[f]
        if isinstance(v, bool) or not isinstance(v, int | float):
            return f"feature {f!r} is not a number"
        if not math.isfinite(v) or abs(v) > ABSURD:
            return f"feature {f!r} is not finite or absurd: {v!r}"
    ts = rec.get("ts")
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int | float)):
        return "'ts' is not a number"
    return None


def decode_transactions(
    values: Sequence[bytes | None], features: Sequence[str], checks: Checks = NO_CHECKS
) -> Decoded:
    """Decode a batch: good rows into ``X``; every other record into ``rejected`` with a reason.

    The fast path checks structure per record and values for the whole batch at once
    (numpy); a batch with a bad value is decoded again record by record
    (:func:`decode_transactions_checked`, the reference the tests hold it to), so the
    result never depends on which path ran.
    """
    d = len(features)
    get = itemgetter(*features) if d > 1 else (lambda f: (f[features[0]],))
    ids: list[str] = []
    rows: list[tuple[Any, ...]] = []
    ts: list[Any] = []
    index: list[int] = []
    rejected: list[tuple[int, str]] = []
    seen: set[str] = set()
    recent, bundle = checks.recent, checks.bundle
    early = _early_reasons(values, checks.keys)
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
            reason = _record_reason(raw, features, seen, checks)
            rejected.append((i, reason or "unreadable record"))
            continue
        seen.add(tx_id)
        ids.append(tx_id)
        rows.append(row)
        ts.append(rec.get("ts"))
        index.append(i)
    kinds = set(map(type, chain.from_iterable(rows)))
    if not kinds <= _NUMBER or not set(map(type, ts)) <= _OPTIONAL_NUMBER:
        return decode_transactions_checked(values, features, checks)
    X = np.array(rows, dtype=np.float64).reshape(len(rows), d)
    if not (np.abs(X) <= ABSURD).all():  # NaN compares False too
        return decode_transactions_checked(values, features, checks)
    return Decoded(ids, X.astype(np.float32), ts, index, rejected)


_NUMBER = {float, int}
_OPTIONAL_NUMBER = {float, int, type(None)}


def _early_reasons(values: Sequence[bytes | None], keys: Sequence[bytes | None] | None) -> dict[int, str]:
    """Position -> reason for the records refused before parsing (usually none)."""
    out: dict[int, str] = {}
    if max(map(len, filter(None, values)), default=0) > MAX_RECORD_BYTES or (
        keys is not None and not all(k is None or k.isascii() for k in keys)
    ):
        for i, raw in enumerate(values):
            reason = _raw_reason(raw, keys[i] if keys is not None else None)
            if reason is not None:
                out[i] = reason
    return out


def _record_reason(raw: bytes | None, features: Sequence[str], seen: set[str], checks: Checks) -> str | None:
    rec = _load_object(raw)
    return rec if isinstance(rec, str) else _reject_reason(rec, features, seen, checks)


def decode_transactions_checked(
    values: Sequence[bytes | None], features: Sequence[str], checks: Checks = NO_CHECKS
) -> Decoded:
    """Record by record, every check in Python: the slow reference for the fast path."""
    ids: list[str] = []
    rows: list[list[float]] = []
    ts: list[float | None] = []
    index: list[int] = []
    rejected: list[tuple[int, str]] = []
    seen: set[str] = set()
    for i, raw in enumerate(values):
        early = _raw_reason(raw, checks.keys[i] if checks.keys is not None else None)
        rec = early if early is not None else _load_object(raw)
        if isinstance(rec, str):
            rejected.append((i, rec))
            continue
        reason = _reject_reason(rec, features, seen, checks)
        if reason is not None:
            rejected.append((i, reason))
            continue
        feats = rec["features"]
        seen.add(rec["id"])
        ids.append(rec["id"])
        rows.append([feats[f] for f in features])
        ts.append(rec.get("ts"))
        index.append(i)
    X = np.array(rows, dtype=np.float32).reshape(len(rows), len(features))
    return Decoded(ids, X, ts, index, rejected)


class RecentIds:
    """The last ``capacity`` ids decided, for refusing a transaction sent twice.

    >>> recent = RecentIds(2).add(["a", "b"]).add(["c"])
    >>> ("a" in recent, "b" in recent, "c" in recent)
    (False, True, True)
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: dict[str, None] = {}  # insertion-ordered: the oldest first

    def __contains__(self, tx_id: object) -> bool:
        return tx_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, ids: Sequence[str]) -> RecentIds:
        if self.capacity <= 0:
            return self
        self._ids.update(dict.fromkeys(ids))
        excess = len(self._ids) - self.capacity
        if excess > 0:
            for tx_id in list(islice(self._ids, excess)):
                del self._ids[tx_id]
        return self


def encode_transaction(tx_id: str, features: Sequence[str], row: Sequence[float], ts: float | None) -> bytes:
    rec: dict[str, object] = {"id": tx_id, "features": dict(zip(features, row, strict=True))}
    if ts is not None:
        rec["ts"] = ts
    return orjson.dumps(rec)


def decode_label(raw: bytes | None) -> tuple[str, int] | str:
    """(id, label) or the reason it is unusable."""
    rec = _raw_reason(raw, None) or _load_object(raw)
    if isinstance(rec, str):
        return rec
    tx_id, label = rec.get("id"), rec.get("label")
    if not isinstance(tx_id, str) or not tx_id:
        return "missing or non-string 'id'"
    if isinstance(label, bool) or label not in (0, 1):
        return "'label' must be 0 or 1"
    return tx_id, int(label)


@dataclass(frozen=True)
class Decision:
    id: str
    score: float
    fraud: bool
    threshold: float
    adapter_version: int
    bundle: str
    conflict: bool
    shadow_score: float


def decode_decision(raw: bytes | None) -> Decision | str:
    """A decision as the scorer writes it, or the reason it is unusable."""
    rec = _load_object(raw)
    if isinstance(rec, str):
        return rec
    try:
        return Decision(
            id=str(rec["id"]),
            score=float(rec["score"]),
            fraud=bool(rec["fraud"]),
            threshold=float(rec["threshold"]),
            adapter_version=int(rec["adapter_version"]),
            bundle=str(rec["bundle"]),
            conflict=bool(rec["conflict"]),
            shadow_score=float(rec["shadow_score"]),
        )
    except KeyError as exc:
        return f"missing field {exc}"
    except (TypeError, ValueError) as exc:
        return f"bad field: {exc}"


def encode_label(tx_id: str, label: int) -> bytes:
    return orjson.dumps({"id": tx_id, "label": int(label)})


def encode_alert(
    detector: str,
    feature: str,
    statistic: float,
    threshold: float,
    state: str,
    ts_ms: float,
    **extra: str | int | float | None,
) -> bytes:
    """An alert; ``extra`` fields say more (a rollback's versions, a refused adapter's reason)."""
    return orjson.dumps(
        {
            "detector": detector,
            "feature": feature,
            "statistic": round(float(statistic), 6),
            "threshold": float(threshold),
            "state": state,
            "ts": int(ts_ms),
            **extra,
        }
    )
