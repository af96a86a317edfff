"""``decisions`` (key: the transaction id): what the scorer decided, and with what.

``{"id", "score", "fraud", "threshold", "adapter_version", "bundle", "rules",
"conflict", "shadow_score", "latency_ms"}``: ``score`` from the live adapter, ``fraud`` is
``score >= threshold``, ``shadow_score`` the frozen no-heal model's, ``rules`` the rules
that fired, ``conflict`` whether a rule disagrees with the score, ``latency_ms`` from the
transaction's ``ts`` (or its receipt) to the decision. Scores are rounded to 6 decimals,
latency to 3.

:func:`encode_decision` is the plain encoder, one value at a time; the scorer's hot loop
uses :func:`encode_decisions`, a byte template filled from per-batch arrays (a dict and
``orjson.dumps`` per decision cost four times as much). A test holds the two to the same
bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
import numpy as np
import orjson

from shared.messages.record import from_fields, load_object
from shared.messages.reject import Reject, RejectCode


@dataclass(frozen=True)
class Decision:
    id: str
    score: float
    fraud: bool
    threshold: float
    adapter_version: int
    bundle: str
    rules: tuple[str, ...]
    conflict: bool
    shadow_score: float
    latency_ms: float

    @property
    def shadow_fraud(self) -> bool:
        """What the frozen, never-healed model decided on the same transaction."""
        return self.shadow_score >= self.threshold


def _round(value: float, decimals: int) -> float:
    """The rounding of the batch encoder (numpy's), one value at a time."""
    return float(np.round(np.float64(value), decimals))


def encode_decision(d: Decision) -> bytes:
    return orjson.dumps(
        {
            "id": d.id,
            "score": _round(d.score, 6),
            "fraud": d.fraud,
            "threshold": d.threshold,
            "adapter_version": d.adapter_version,
            "bundle": d.bundle,
            "rules": list(d.rules),
            "conflict": d.conflict,
            "shadow_score": _round(d.shadow_score, 6),
            "latency_ms": _round(d.latency_ms, 3),
        }
    )


def decode_decision(raw: bytes | None) -> Decision | Reject:
    """A decision as the scorer writes it, or why it is unusable."""
    rec = load_object(raw)
    if isinstance(rec, Reject):
        return rec
    rules = rec.get("rules")
    if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
        return Reject(RejectCode.SCHEMA, "'rules' is missing or not a list of names")
    return from_fields(
        lambda: Decision(
            id=str(rec["id"]),
            score=float(rec["score"]),
            fraud=bool(rec["fraud"]),
            threshold=float(rec["threshold"]),
            adapter_version=int(rec["adapter_version"]),
            bundle=str(rec["bundle"]),
            rules=tuple(rules),
            conflict=bool(rec["conflict"]),
            shadow_score=float(rec["shadow_score"]),
            latency_ms=float(rec["latency_ms"]),
        )
    )


def decode_decisions(values: Sequence[bytes | None]) -> list[Decision | Reject]:
    """:func:`decode_decision` for a batch (the healer reads every decision): msgspec
    builds each well-typed record in C; a record it refuses goes through
    :func:`decode_decision`, which accepts or rejects it as ever (a test holds the two to the
    same results)."""
    decode = _DECODER.decode
    out: list[Decision | Reject] = []
    for raw in values:
        try:
            out.append(decode(raw))  # type: ignore[arg-type]
        except (msgspec.DecodeError, TypeError):
            out.append(decode_decision(raw))
    return out


_DECODER = msgspec.json.Decoder(Decision)


# -- the scorer's batch encoder ----------------------------------------------------------------

_DECISION = b'{"id":%b,"score":%b,"fraud":%b,%b,"rules":%b,"conflict":%b,"shadow_score":%b,"latency_ms":%b}'
_JSON_BOOL = (b"false", b"true")


def shared_fields(threshold: float, adapter_version: int, bundle: str) -> bytes:
    """The fields every decision of a batch shares, encoded once (the template's ``constants``)."""
    encoded = orjson.dumps({"threshold": threshold, "adapter_version": adapter_version, "bundle": bundle})
    return encoded[1:-1]


def _json_numbers(values: np.ndarray, decimals: int) -> list[bytes]:
    """Each value rounded and JSON-encoded: one ``orjson.dumps`` for the batch, split."""
    return orjson.dumps(np.round(values.astype(np.float64), decimals).tolist())[1:-1].split(b",")


def encode_decisions(
    ids: list[str],
    p: np.ndarray,
    shadow: np.ndarray,
    rules: list[bytes],
    conflicts: np.ndarray,
    latency_ms: np.ndarray,
    threshold: float,
    constants: bytes,
) -> list[bytes]:
    """Decisions from per-batch arrays; ``rules`` holds each row's encoded JSON list of rule
    names and ``constants`` the encoded shared fields (:func:`shared_fields`)."""
    if len(ids) == 0:
        return []
    if not (np.isfinite(p).all() and np.isfinite(shadow).all()):
        raise ValueError("non-finite scores: the adapter is broken")
    dumps, tf, tpl = orjson.dumps, _JSON_BOOL, _DECISION
    return [
        tpl % (dumps(i), s, tf[f], constants, r, tf[c], q, lat)
        for i, s, f, r, c, q, lat in zip(
            ids,
            _json_numbers(p, 6),
            (p >= threshold).tolist(),
            rules,
            conflicts.tolist(),
            _json_numbers(shadow, 6),
            _json_numbers(latency_ms, 3),
            strict=True,
        )
    ]
