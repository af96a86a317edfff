"""Reading one JSON object from a record, the same way for every topic."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import orjson

from shared.messages.reject import Reject, RejectCode

MAX_RECORD_BYTES = 64 * 1024  # a transaction is ~0.6 kB; larger records are refused unparsed


def size_reject(raw: bytes | None) -> Reject | None:
    """A record too large to parse, refused before it is read."""
    if raw is not None and len(raw) > MAX_RECORD_BYTES:
        return Reject(RejectCode.SIZE, f"record too large: {len(raw)} bytes (limit {MAX_RECORD_BYTES})")
    return None


def load_object(raw: bytes | None) -> dict[str, Any] | Reject:
    """The JSON object in ``raw``, or why there is none."""
    if not raw:
        return Reject(RejectCode.EMPTY, "empty message")
    try:
        rec = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Reject(RejectCode.JSON, f"not JSON: {exc.msg}")
    return rec if isinstance(rec, dict) else Reject(RejectCode.SCHEMA, "value is not a JSON object")


T = TypeVar("T")


def from_fields(build: Callable[[], T]) -> T | Reject:
    """``build()`` (which reads a decoded object's fields), or why it could not: a missing
    field is a schema problem, a field of the wrong type or value a value problem."""
    try:
        return build()
    except KeyError as exc:
        return Reject(RejectCode.SCHEMA, f"missing field {exc}")
    except (TypeError, ValueError) as exc:
        return Reject(RejectCode.VALUE, f"bad field: {exc}")
