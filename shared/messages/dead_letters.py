"""``transactions.dlq`` (key: as received): records that could not be used, never dropped.

The value and key are the original's; headers say why and where it came from: ``reason``
(the text), ``code`` (a :class:`RejectCode`, stable), ``service``, and the source
``topic``, ``partition`` and ``offset``. Bad labels land here too, from the healer.

>>> letter = DeadLetter(Reject(RejectCode.JSON, "not JSON: unexpected end"), "scorer", "transactions", 2, 41)
>>> decode_dead_letter(letter.headers()) == letter
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.messages.reject import Reject, RejectCode


@dataclass(frozen=True)
class DeadLetter:
    reason: Reject
    service: str  # who refused it
    topic: str  # where it came from
    partition: int
    offset: int

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            ("reason", self.reason.text.encode()),
            ("code", self.reason.code.value.encode()),
            ("service", self.service.encode()),
            ("topic", self.topic.encode()),
            ("partition", str(self.partition).encode()),
            ("offset", str(self.offset).encode()),
        ]


def decode_dead_letter(headers: Sequence[tuple[str, bytes | str | None]]) -> DeadLetter:
    """The dead letter's headers read back (what a DLQ consumer routes on)."""
    h = {k: (v.decode() if isinstance(v, bytes) else (v or "")) for k, v in headers}
    code = RejectCode(h["code"]) if h.get("code") in RejectCode._value2member_map_ else RejectCode.OTHER
    return DeadLetter(
        Reject(code, h.get("reason", "")),
        h.get("service", ""),
        h.get("topic", ""),
        int(h.get("partition") or -1),
        int(h.get("offset") or -1),
    )
