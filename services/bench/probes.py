"""What the machine does while the benchmark runs: CPU steal (the hypervisor taking this
machine's CPU, which on a shared host comes and goes by the minute) and a process's CPU."""

from __future__ import annotations

import os
import time
from pathlib import Path


def cpu_times() -> list[int]:
    """The machine's CPU times (user, nice, system, idle, iowait, irq, softirq, steal, ...)."""
    return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def steal_between(before: list[int], after: list[int]) -> float | None:
    """The share (%) of CPU time the hypervisor took between two ``cpu_times()``; None when
    the kernel does not say."""
    total = sum(after) - sum(before)
    return 100.0 * (after[7] - before[7]) / total if total > 0 and len(after) > 7 else None


def steal_pct(seconds: float = 1.0) -> float:
    """The share of CPU time the hypervisor takes from this machine, over ``seconds``."""
    before = cpu_times()
    time.sleep(seconds)
    return steal_between(before, cpu_times()) or 0.0


def wait_quiet(max_steal: float, patience: float) -> float:
    """Wait (up to ``patience`` seconds) for a second with CPU steal under ``max_steal`` %;
    returns the last second's steal."""
    deadline = time.monotonic() + patience
    steal = steal_pct()
    while steal > max_steal and time.monotonic() < deadline:
        steal = steal_pct()
    return steal


def process_cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) a process has used; 0 when unknown."""
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
