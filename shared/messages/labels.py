"""``labels`` (key: the transaction id): late truth, from chargebacks and analyst verdicts.

``{"id": str, "label": 0 or 1, "ts": epoch ms (optional), "source": str (optional)}``:
``ts`` is the label's own event time (when the verdict or chargeback came); without it the
record timestamp stands in. ``source`` says how the label was drawn: ``analyst`` (an
investigator's verdict on an alert), ``chargeback``, ``customer`` (a complaint) or
``implied`` (genuine because nothing came in the chargeback window); another word is kept
and counted as it is, none is counted as ``unknown`` (:mod:`shared.feedback`).
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
    source: str | None = None  # how it was drawn: analyst, chargeback, customer, implied, ...


def encode_label(label: Label) -> bytes:
    rec: dict[str, object] = {"id": label.id, "label": int(label.label)}
    if label.ts is not None:
        rec["ts"] = label.ts
    if label.source is not None:
        rec["source"] = label.source
    return orjson.dumps(rec)


def decode_label(raw: bytes | None) -> Label | Reject:
    """The label, or why it is unusable.

    >>> decode_label(b'{"id": "tx-1", "label": 1}')
    Label(id='tx-1', label=1, ts=None, source=None)
    >>> decode_label(b'{"id": "tx-1", "label": 0, "ts": 1700000000000, "source": "analyst"}')
    Label(id='tx-1', label=0, ts=1700000000000.0, source='analyst')
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
    source = rec.get("source")
    if source is not None and (not isinstance(source, str) or not 0 < len(source) <= 64):
        return Reject(RejectCode.VALUE, "'source' is not a word of 1-64 characters")
    return Label(tx_id, int(label), None if ts is None else float(ts), source)
