"""Running every phase, and the table: bench.json, bench.md and the printed summary."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from services.bench.config import PHASES, BenchConfig
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
    wanted = set(cfg.only or PHASES) - (set() if cfg.profile or cfg.only else {"profile"})
    with h.session():
        if "heal" in wanted:
            h.heal_cycles()
        if "featurelog" in wanted:
            from services.bench.featurelog import feature_log  # (a module also run as a child)

            h.results["feature_log"] = feature_log(cfg.log_rows, out / "feature-log", say)
        for name, phase in (("throughput", throughput), ("two_scorers", two_scorers)):
            if name in wanted:
                with h.steal(name):
                    phase(h)
        if "latency" in wanted:
            latency(h)
        if "monitor" in wanted:
            from services.bench.monitorgroup import agreement, monitor_group

            with h.steal("monitor"):
                monitor(h)
            with h.steal("monitor_group"):
                monitor_group(h)
            h.results["monitor_group_agreement"] = agreement(say)
        if "profile" in wanted:
            profile(h)
    r = h.results
    r["rss_mb"] = h.rss
    r["config"] = asdict(cfg)
    r["machine"] = {"cpus": os.cpu_count(), "broker": "embedded" if h.embedded else "external"}
    r["targets"] = check_targets(r)
    r["seconds"] = round(say.elapsed, 1)
    name = "bench.json" if not cfg.only else f"bench-{'-'.join(cfg.only)}.json"
    (out / name).write_bytes(orjson.dumps(r, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    if not cfg.only:
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
        (
            "scorer, 1 process, a healed adapter live",
            f"{r.get('scorer_tps_healed', 0):,} tx/s",
            "the rounds above score with the bundle's adapter (live = shadow: scored once)",
        ),
        ("scorer, 2 processes", f"{r['scorer_tps_2']:,} tx/s", "-"),
        *[
            (
                f"latency p50/p95/p99 at {int(k):,} tx/s",
                ms(v) + (f" ({v['p99'] / base[k]['p99']:.2f}x passthrough p99)" if base.get(k) else ""),
                f"passthrough {ms(base.get(k, {}))}; " + targets_of(f"latency{k}"),
            )
            for k, v in sorted(lat.items(), key=lambda kv: int(kv[0]))
        ],
        (
            "publish -> first decision using it (worst)",
            f"{r['swap_publish_to_use_ms']} ms",
            targets_of("swap"),
        ),
        ("batch gap in a swap / outside swaps / median", gaps, targets_of("gaps")),
        *timeline_rows(r),
        (
            "heal cycle, median / max",
            f"{r['heal_cycle_ms']} / {r['heal_cycle_ms_max']} ms",
            targets_of("heal"),
        ),
        ("scorer beside a healer healing flat out", healing, targets_of("healing")),
        ("monitor (FIDI), 1 process", f"{r['monitor_tps']:,} tx/s", targets_of("monitor")),
        *monitor_group_rows(r),
        *feature_log_rows(r),
        ("peak RSS", ", ".join(f"{k} {v:.0f} MB" for k, v in r["rss_mb"].items()), "-"),
        ("CPU steal by phase", ", ".join(f"{k} {v}%" for k, v in steal.items()), "0% on a quiet machine"),
    ]


def timeline_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    """What filled the widest gaps (the loop timelines): waiting for input or busy."""
    tl = r.get("timeline", {})
    rows = []
    for phase in sorted(tl, key=lambda p: (p != "swap", p)):
        s, p = tl[phase].get("scorer"), tl[phase].get("passthrough")
        if not s or "gap_ms" not in s:
            continue
        widest = s["widest_gaps"][0]
        base = (
            f"passthrough: longest {p['gap_ms']['max']} ms, median {p['gap_ms']['median']} ms"
            if p and "gap_ms" in p
            else "-"
        )
        rows.append(
            (
                f"scorer loop, {phase}: longest gap (waiting / busy); busy p99; age on arrival p99",
                f"{widest['gap_ms']} ms ({widest['waiting_ms']} / {widest['busy_ms']}); "
                f"{s['busy_ms']['p99']} ms; {s['age_at_receipt_ms']['p99']} ms",
                base,
            )
        )
    return rows


def monitor_group_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    if "monitor_group_tps" in r:
        split = " + ".join(f"{n:,}" for n in r.get("monitor_group_split", []))
        rows.append(("monitors, 2 in a group", f"{r['monitor_group_tps']:,} tx/s (read {split})", "-"))
    for name, s in r.get("monitor_group_agreement", {}).items():
        alarms = s["alarm_rows"]
        shown = "; ".join(f"{k} {v or 'none'}" for k, v in alarms.items())
        rows.append((f"FIDI alarm rows on {name} ({s['rows']:,} rows)", shown, targets_of("monitorgroup")))
    return rows


def feature_log_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    fl = r.get("feature_log", {})
    s, rdb, intake = fl.get("log"), fl.get("rocksdb"), fl.get("intake")
    if not s:
        return []
    scorer = r.get("scorer_tps_1")
    intake_rows = (
        [
            (
                "healer intake (transactions and decisions decoded, joined): every row logged / 1 in 8",
                f"{intake['tx_per_s']:,} / {intake['tx_per_s_sampled_8']:,} tx/s",
                f"one scorer {scorer:,.0f} tx/s" if scorer else "-",
            )
        ]
        if intake
        else []
    )
    vs = " / ".join(f"{k} {rdb[k]:,}" for k in ("write_rows_per_s", "lookup_ms_p99")) if rdb else "-"
    return [
        (
            f"feature log (RocksDB, through the join): writes, lookup p99 ({s['rows']:,} rows)",
            f"{s['write_rows_per_s']:,} rows/s, {s['lookup_ms_p99']} ms",
            f"{targets_of('log')}; raw batches {vs}",
        ),
        (
            "feature log: disk per million rows; healer RSS with them",
            f"{s['disk_mb_per_million_rows']} MB; {s['healer_rss_mb']:.0f} MB",
            "raw "
            + (f"{rdb['disk_mb_per_million_rows']} MB; store {rdb['store_rss_mb']:.0f} MB" if rdb else "-"),
        ),
        *intake_rows,
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
