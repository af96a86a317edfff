"""Units on the command line: durations (``20s``, ``90m``, ``6h``, ``30d``), label delays
(``500`` transactions or a duration) and sizes (``512MB``, ``2GB``).

>>> parse_duration("6h"), parse_duration("250ms"), parse_duration("1.5s")
(21600000.0, 250.0, 1500.0)
>>> parse_bytes("2GB"), parse_bytes("512MB"), parse_bytes("1000")
(2147483648, 536870912, 1000)
>>> Delay.parse("500"), Delay.parse("20s")
(Delay(rows=500, ms=None), Delay(rows=None, ms=20000.0))
>>> str(Delay.parse("2h")), str(Delay.parse("500"))
('2h', '500 transactions')
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.errors import ConfigError

UNITS_MS = {"ms": 1.0, "s": 1e3, "m": 60e3, "min": 60e3, "h": 3600e3, "d": 86400e3}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d)\s*$")


def parse_duration(text: str) -> float:
    """Milliseconds in ``text`` (a number and a unit: ms, s, m or min, h, d)."""
    match = _PATTERN.match(text)
    if match is None:
        raise ConfigError(f"not a duration: {text!r} (a number and a unit: 500ms, 20s, 90m, 6h, 30d)")
    return float(match.group(1)) * UNITS_MS[match.group(2)]


_SIZES = {"": 1, "B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?B?)\s*$", re.IGNORECASE)


def parse_bytes(text: str) -> int:
    """Bytes in ``text`` (a number, optionally KB, MB, GB or TB: powers of 1024)."""
    match = _SIZE.match(text)
    if match is None:
        raise ConfigError(f"not a size: {text!r} (bytes, or a number and KB, MB, GB, TB)")
    unit = match.group(2).upper()
    unit = unit if unit.endswith("B") or not unit else unit + "B"
    return int(float(match.group(1)) * _SIZES[unit])


def format_duration(ms: float) -> str:
    """The largest unit that divides ``ms`` (``7200000.0`` -> ``2h``)."""
    for unit in ("d", "h", "m", "s"):
        n = ms / UNITS_MS[unit]
        if n >= 1 and n == int(n):
            return f"{int(n)}{unit}"
    return f"{ms:g}ms"


@dataclass(frozen=True)
class Delay:
    """How late labels come: a count of transactions, or a span of event time."""

    rows: int | None = None
    ms: float | None = None

    @classmethod
    def parse(cls, text: str) -> Delay:
        if text.strip().isdigit():
            return cls(rows=int(text))
        return cls(ms=parse_duration(text))

    def __str__(self) -> str:
        return f"{self.rows} transactions" if self.rows is not None else format_duration(self.ms or 0.0)

    def rows_at(self, rate: float) -> int:
        """Transactions this delay spans at ``rate`` transactions a second (event time)."""
        return self.rows if self.rows is not None else round((self.ms or 0.0) * rate / 1e3)
