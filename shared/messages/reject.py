"""Why a record cannot be used: a stable code (the metric label, the ``code`` header on a
dead letter) and the human text (the ``reason`` header, the log line).

The code never depends on the wording, so rewording a message cannot move a metric.

>>> r = Reject(RejectCode.SIZE, "record too large: 70000 bytes (limit 65536)")
>>> (r.code.value, str(r))
('size', 'record too large: 70000 bytes (limit 65536)')
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class RejectCode(StrEnum):
    EMPTY = "empty"  # no bytes at all
    JSON = "json"  # not JSON
    SIZE = "size"  # over MAX_RECORD_BYTES, refused unparsed
    KEY = "key"  # the record key is not UTF-8
    BUNDLE = "bundle"  # the record names another bundle
    DUPLICATE = "duplicate"  # an id seen in the batch or decided recently
    SCHEMA = "schema"  # a field missing, unknown or of the wrong shape
    VALUE = "value"  # a field of the wrong type, or a number not finite or absurd
    OTHER = "other"  # none of the above (the decoders never return it on purpose)


@dataclass(frozen=True)
class Reject:
    code: RejectCode
    text: str

    def __str__(self) -> str:
        return self.text

    def prefixed(self, prefix: str) -> Reject:
        """The same code, the text saying what was being read (``label: not JSON ...``)."""
        return Reject(self.code, f"{prefix}: {self.text}")
