"""How long one machine lasts: the embedded broker's memory against a budget.

The embedded broker keeps every record in memory and never frees it: it ignores
``retention.ms`` and ``retention.bytes`` and answers DeleteRecords with "not yet
implemented" (measured: about 1 MB per 1,000 transactions with their decisions and
labels). ``selfheal up`` samples its resident memory and warns at half, four fifths and
nineteen twentieths of ``--broker-memory``, each once, with the growth rate and the time
left at that rate, and says what to do.

>>> watch = BrokerMemory(budget_mb=1000)
>>> watch.update(100.0, now=0.0) is None
True
>>> print(watch.update(520.0, now=60.0)[:94])
the embedded broker holds 520 MB of its 1,000 MB budget (52%), growing 420 MB/min: about 1 min
>>> watch.update(560.0, now=70.0) is None   # warned once for this step
True
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

STEPS = (0.5, 0.8, 0.95)  # shares of the budget that warn, each once
ADVICE = (
    "It keeps every record in memory and frees none (no retention, no DeleteRecords). Stop "
    "and start `selfheal up` again to empty it (the healer keeps its registry and feature log on "
    "disk), or run sustained traffic on a real cluster (KAFKA_BOOTSTRAP_SERVERS, deploy/compose.yaml)."
)


def default_budget_mb() -> float:
    """A quarter of the machine's memory: the rest is the services' and the system's."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 4
    return 4096.0


class BrokerMemory:
    def __init__(self, budget_mb: float, window_s: float = 300.0) -> None:
        self.budget_mb, self.window_s = budget_mb, window_s
        self.samples: deque[tuple[float, float]] = deque()
        self.warned = 0  # how many of STEPS have warned

    def update(self, rss: float, now: float) -> str | None:
        """A warning when ``rss`` (MB) crosses the next step of the budget, else None."""
        self.samples.append((now, rss))
        while self.samples and self.samples[0][0] < now - self.window_s:
            self.samples.popleft()
        share = rss / self.budget_mb
        crossed = sum(1 for s in STEPS if share >= s)
        if crossed <= self.warned:
            return None
        self.warned = crossed
        return f"{self.status(rss)} {ADVICE}"

    def rate_mb_per_min(self) -> float:
        (t0, m0), (t1, m1) = self.samples[0], self.samples[-1]
        return (m1 - m0) / (t1 - t0) * 60 if t1 > t0 else 0.0

    def status(self, rss: float) -> str:
        rate = self.rate_mb_per_min()
        left = (self.budget_mb - rss) / rate if rate > 0 else None
        when = (
            "at the budget already"
            if rss >= self.budget_mb
            else ("not growing" if left is None else f"about {max(1, round(left))} min left")
        )
        return (
            f"the embedded broker holds {rss:,.0f} MB of its {self.budget_mb:,.0f} MB budget "
            f"({rss / self.budget_mb:.0%}), growing {rate:,.0f} MB/min: {when}."
        )
