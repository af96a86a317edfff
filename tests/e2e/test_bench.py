"""`selfheal bench --quick`: every phase runs and bench.json has every figure (slow: ~90 s)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

KEYS = {
    "passthrough_tps", "scorer_tps_1", "scorer_tps_2", "scorer_ratio", "latency_ms",
    "swap_publish_to_use_ms", "swap_max_gap_ms", "batch_median_gap_ms", "heal_cycle_ms",
    "monitor_tps", "rss_mb", "targets", "cpu_steal_pct", "passthrough_latency_ms",
    "batch_max_gap_ms_outside_swaps", "timeline", "cpu_cores",
}  # fmt: skip


@pytest.mark.slow
def test_quick_bench_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "bench", "--quick", "--rows", "20000", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    r = json.loads((out / "bench.json").read_text())
    assert KEYS <= set(r)
    assert set(r["latency_ms"]) == set(r["passthrough_latency_ms"]) == {"1000", "3000"}
    assert {"p50", "p95", "p99", "acked_p99", "rounds_p99"} <= set(r["latency_ms"]["3000"])
    assert r["latency_ms"]["1000"]["lost"] == 0 and r["latency_ms"]["3000"]["lost"] == 0
    # every phase's loop timeline: the scorer's batches, their gaps and what filled them
    assert {"latency_1000", "latency_3000", "swap"} <= set(r["timeline"])
    swap = r["timeline"]["swap"]["scorer"]
    assert swap["batches"] > 10 and swap["widest_gaps"][0]["cause"] in ("waiting", "busy", "gc")
    assert {"scorer", "monitor", "healer"} <= set(r["rss_mb"])
    assert sum(r["scorer_split_2"]) == 20000 and min(r["scorer_split_2"]) > 0  # both scored
    assert r["passthrough_tps"] > 0 and r["scorer_tps_1"] > 0 and r["heal_cycle_ms"] > 0
    assert "passthrough (consume -> produce)" in result.stdout and "heal cycle <= 1 s" in result.stdout
