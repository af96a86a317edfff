"""Progress lines for long work, each stamped with the seconds since the work began.

>>> import io
>>> out = io.StringIO()
>>> say = Progress(stream=out)
>>> say("training")
>>> out.getvalue()[:2], out.getvalue().endswith("s] training\\n")
('[ ', True)
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.quiet = quiet
        self.stream = stream  # None: whatever sys.stderr is when a line is written
        self.start = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(f"[{self.elapsed:6.1f}s] {msg}", file=self.stream or sys.stderr, flush=True)
