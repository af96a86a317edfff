"""Running every phase, and the table: bench.json, bench.md and the printed summary."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from services.bench.config import BenchConfig
from services.bench.harness import Harness
from services.bench.latency import latency
from services.bench.targets import check_targets, targets_of
from services.bench.throughput import monitor, profile, throughput, two_scorers
from shared.progress import Progress


def run_bench(out: str | Path, cfg: BenchConfig | None = None, quiet: bool = False) -> dict[str, Any]:
    out = Path(out)
    say = Progress(quiet, stream=None)
    cfg = cfg or BenchConfig()
    h = Harness(cfg, out, say)
    with h.session():
        h.heal_cycles()
        from services.bench.featurelog import feature_log  # (a module also run as a child)

        h.results["feature_log"] = feature_log(cfg.log_rows, out / "feature-log", say)
        with h.steal("throughput"):
            throughput(h)
        with h.steal("two_scorers"):
            two_scorers(h)
        latency(h)
        with h.steal("monitor"):
            monitor(h)
        if cfg.profile:
            profile(h)
    r = h.results
    r["rss_mb"] = h.rss
    r["config"] = asdict(cfg)
    r["machine"] = {"cpus": os.cpu_count(), "broker": "embedded" if h.embedded else "external"}
    r["targets"] = check_targets(r)
    r["seconds"] = round(say.elapsed, 1)
    (out / "bench.json").write_bytes(orjson.dumps(r, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    (out / "bench.md").write_text(markdown_bench(r) + "\n")
    return r


def bench_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, measured, baseline or target) for the table."""
    lat, base = r["latency_ms"], r.get("passthrough_latency_ms", {})
    steal = r.get("cpu_steal_pct", {})

    def ms(v: dict[str, float]) -> str:
        return f"{v['p50']:.0f} / {v['p95']:.0f} / {v['p99']:.0f} ms" if v else "-"

    gaps = f"{r['swap_max_gap_ms']} / {r['batch_max_gap_ms_outside_swaps']} / {r['batch_median_gap_ms']} ms"
    healing = f"{r['scorer_tps_healing']:,} tx/s ({-r['healing_throughput_drop']:+.1%})"
    return [
        (
            "passthrough (consume -> produce)",
            f"{r['passthrough_tps']:,} tx/s",
            "the limit of the Python path",
        ),
        (
            "scorer, 1 process",
            f"{r['scorer_tps_1']:,} tx/s ({r['scorer_ratio']:.0%} of passthrough)",
            targets_of("scorer"),
        ),
        ("scorer, 2 processes", f"{r['scorer_tps_2']:,} tx/s", "-"),
        *[
            (
                f"latency p50/p95/p99 at {int(k):,} tx/s",
                ms(v),
                f"passthrough {ms(base.get(k, {}))}" + ("; " + targets_of("latency") if k == "10000" else ""),
            )
            for k, v in lat.items()
        ],
        (
            "publish -> first decision using it (worst)",
            f"{r['swap_publish_to_use_ms']} ms",
            targets_of("swap"),
        ),
        ("batch gap in a swap / outside swaps / median", gaps, targets_of("gaps")),
        (
            "heal cycle, median / max",
            f"{r['heal_cycle_ms']} / {r['heal_cycle_ms_max']} ms",
            targets_of("heal"),
        ),
        ("scorer beside a healer healing flat out", healing, targets_of("healing")),
        ("monitor (FIDI)", f"{r['monitor_tps']:,} tx/s", "-"),
        *feature_log_rows(r),
        ("peak RSS", ", ".join(f"{k} {v:.0f} MB" for k, v in r["rss_mb"].items()), "-"),
        ("CPU steal by phase", ", ".join(f"{k} {v}%" for k, v in steal.items()), "0% on a quiet machine"),
    ]


def feature_log_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    fl = r.get("feature_log", {})
    s, rdb = fl.get("sqlite"), fl.get("rocksdb")
    if not s:
        return []
    vs = " / ".join(f"{k} {rdb[k]:,}" for k in ("write_rows_per_s", "lookup_ms_p99")) if rdb else "-"
    return [
        (
            f"feature log (SQLite): writes, lookup p99 ({s['rows']:,} rows)",
            f"{s['write_rows_per_s']:,} rows/s, {s['lookup_ms_p99']} ms",
            f"{targets_of('log')}; RocksDB {vs}",
        ),
        (
            "feature log: disk per million rows; healer RSS with them",
            f"{s['disk_mb_per_million_rows']} MB; {s['healer_rss_mb']:.0f} MB",
            "RocksDB "
            + (f"{rdb['disk_mb_per_million_rows']} MB; store {rdb['store_rss_mb']:.0f} MB" if rdb else "-"),
        ),
    ]


def format_bench(r: dict[str, Any]) -> str:
    rows = bench_rows(r)
    width = max(len(a) for a, _, _ in rows)
    lines = [f"{a:<{width}}  {b}" for a, b, _ in rows]
    lines.append("")
    lines += [
        f"{'PASS' if ok else ('n/a ' if ok is None else 'FAIL')}  {name}" for name, ok in r["targets"].items()
    ]
    return "\n".join(lines)


def markdown_bench(r: dict[str, Any]) -> str:
    lines = ["| figure | measured | baseline / target |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in bench_rows(r)]
    return "\n".join(lines)
