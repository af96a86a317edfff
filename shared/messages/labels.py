"""``labels`` (key: the transaction id): late truth, from chargebacks and analyst verdicts.

``{"id": str, "label": 0 or 1, "ts": epoch ms (optional)}``: ``ts`` is the label's own
event time (when the verdict or chargeback came); without it the record timestamp stands in.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from shared.messages.record import load_object, size_reject
from shared.messages.reject import Reject, RejectCode


@dataclass(frozen=True)
class Label:
    id: str
    label: int  # 1 = fraud
    ts: float | None = None  # when the label came, epoch ms


def encode_label(label: Label) -> bytes:
    rec: dict[str, object] = {"id": label.id, "label": int(label.label)}
    if label.ts is not None:
        rec["ts"] = label.ts
    return orjson.dumps(rec)


def decode_label(raw: bytes | None) -> Label | Reject:
    """The label, or why it is unusable.

    >>> decode_label(b'{"id": "tx-1", "label": 1}')
    Label(id='tx-1', label=1, ts=None)
    >>> decode_label(b'{"id": "tx-1", "label": 0, "ts": 1700000000000}').ts
    1700000000000.0
    >>> str(decode_label(b'{"id": "tx-1", "label": 2}'))
    "'label' must be 0 or 1"
    """
    rec = size_reject(raw) or load_object(raw)
    if isinstance(rec, Reject):
        return rec
    tx_id, label = rec.get("id"), rec.get("label")
    if not isinstance(tx_id, str) or not tx_id:
        return Reject(RejectCode.SCHEMA, "missing or non-string 'id'")
    if isinstance(label, bool) or label not in (0, 1):
        return Reject(RejectCode.VALUE, "'label' must be 0 or 1")
    ts = rec.get("ts")
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int | float)):
        return Reject(RejectCode.VALUE, "'ts' is not a number")
    return Label(tx_id, int(label), None if ts is None else float(ts))
