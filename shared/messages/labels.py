"""``labels`` (key: the transaction id): late truth, from chargebacks and analyst verdicts.

``{"id": str, "label": 0 or 1}``
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


def encode_label(label: Label) -> bytes:
    return orjson.dumps({"id": label.id, "label": int(label.label)})


def decode_label(raw: bytes | None) -> Label | Reject:
    """The label, or why it is unusable.

    >>> decode_label(b'{"id": "tx-1", "label": 1}')
    Label(id='tx-1', label=1)
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
    return Label(tx_id, int(label))
