"""The benchmark's arithmetic: rates, percentiles, batch gaps, profiles, targets."""

from __future__ import annotations

import math

from services.bench.measure import batch_times, metric, percentiles, profile_summary, rate_after, swap_gaps
from services.bench.report import bench_rows, format_bench
from services.bench.targets import TARGETS, check_targets


def test_rate_is_timed_from_the_mark_to_the_last_message() -> None:
    stamps = [900.0, 950.0] + [1000.0 + i for i in range(1, 101)]  # 100 after the mark, over 100 ms
    tps, n = rate_after(stamps, since_ms=1000.0)
    assert n == 100 and tps == 1000.0
    assert math.isnan(rate_after([1.0], 0.0)[0])


def test_percentiles() -> None:
    p = percentiles(list(range(1, 101)))
    assert p["p50"] == 50.5 and p["p99"] == 99.01 and p["n"] == 100
    assert math.isnan(percentiles([])["p50"])


def test_batches_are_clustered_and_gaps_overlapping_a_swap_found() -> None:
    scored = [10.0, 10.004, 10.002, 20.0, 20.001, 45.0, 55.0]
    batches = batch_times(scored)
    assert batches == [10.0, 20.0, 45.0, 55.0]
    assert swap_gaps(batches, start_ms=30.0, end_ms=46.0) == [25.0, 10.0]  # 20->45 and 45->55
    assert swap_gaps(batches, start_ms=11.0, end_ms=12.0) == [10.0]


def test_metric_sums_samples_of_one_name_only() -> None:
    text = (
        "# HELP selfheal_scorer_dlq_total x\n"
        'selfheal_scorer_dlq_total{reason="json"} 2.0\n'
        'selfheal_scorer_dlq_total{reason="schema"} 3.0\n'
        "selfheal_scorer_dlq_created 1.7e9\n"
        "selfheal_scorer_decisions_total 10.0\n"
    )
    assert metric(text, "selfheal_scorer_dlq_total") == 5.0
    assert metric(text, "selfheal_scorer_decisions_total") == 10.0


def test_profile_summary_counts_inclusive_and_self_samples() -> None:
    raw = (
        "main (a.py:1);handle (/x/scorer.py:5);loads (/x/wire.py:9) 30\n"
        "main (a.py:1);handle (/x/scorer.py:5) 10\n"
        "main (a.py:1);idle (/x/loop.py:2) 60\n"
    )
    s = profile_summary(raw)
    inclusive = dict(s["inclusive_pct"])
    assert inclusive["main (a.py)"] == 100.0 and inclusive["handle (scorer.py)"] == 40.0
    assert dict(s["self_pct"])["loads (wire.py)"] == 30.0


def test_targets() -> None:
    r = {
        "scorer_tps_1": 60_000,
        "scorer_ratio": 0.4,
        "latency_ms": {"10000": {"p99": 45.0}},
        "swap_publish_to_use_ms": 30.0,
        "swap_max_gap_ms": 25.0,
        "batch_median_gap_ms": 10.0,
        "heal_cycle_ms": 120.0,
        "healing_throughput_drop": 0.02,
    }
    r |= {
        "latency_ms": {"10000": {"p99": 45.0}, "1000": {"p99": 14.0}, "3000": {"p99": 40.0}},
        "passthrough_latency_ms": {"1000": {"p99": 10.0}, "3000": {"p99": 40.0}},
        "timeline": {  # the loops' longest gaps, scorer against passthrough in the same phase
            "swap": {"scorer": {"gap_ms": {"max": 25.0}}, "passthrough": {"gap_ms": {"max": 20.0}}},
            "latency_1000": {"scorer": {"gap_ms": {"max": 30.0}}, "passthrough": {"gap_ms": {"max": 19.0}}},
            "latency_3000": {"scorer": {"gap_ms": {"max": 20.0}}, "passthrough": {"gap_ms": {"max": 19.0}}},
        },
    }
    t = check_targets(r)
    assert t["scorer >= 50k tx/s per process"] and not t["scorer >= 50% of passthrough"]
    assert t["scorer >= 35% of passthrough"]
    assert not t["p99 <= 1.1x passthrough at 1k tx/s"] and t["p99 <= 1.1x passthrough at 3k tx/s"]
    assert t["p99 <= 1.1x passthrough at 10k tx/s"] is None  # no passthrough figure at that rate
    assert t["p99 <= 50 ms at 10k tx/s"] and t["longest gap in the swap phase <= 1.5x passthrough's there"]
    assert not t["longest gap at fixed rates <= 1.5x passthrough's in the same phase"]  # 30 / 19 at 1k
    assert t["heal cycle <= 1 s"] and t["healing costs scoring <= 10%"]
    assert check_targets({})["heal cycle <= 1 s"] is None  # not measured: neither met nor missed


def test_the_table_and_the_checks_come_from_one_list_of_targets() -> None:
    r = {
        "passthrough_tps": 100_000,
        "scorer_tps_1": 60_000,
        "scorer_ratio": 0.6,
        "scorer_tps_2": 90_000,
        "latency_ms": {
            "1000": {"p50": 5.0, "p95": 9.0, "p99": 12.0},
            "3000": {"p50": 6.0, "p95": 19.0, "p99": 22.0},
            "10000": {"p50": 9.0, "p95": 40.0, "p99": 60.0},
        },
        "passthrough_latency_ms": {"1000": {"p50": 5.0, "p95": 9.0, "p99": 11.0}},
        "swap_publish_to_use_ms": 30.0,
        "swap_max_gap_ms": 15.0,
        "batch_max_gap_ms_outside_swaps": 20.0,
        "batch_median_gap_ms": 10.0,
        "heal_cycle_ms": 120.0,
        "heal_cycle_ms_max": 130.0,
        "scorer_tps_healing": 57_000,
        "healing_throughput_drop": 0.05,
        "monitor_tps": 7000,
        "monitor_group_tps": 12_000,
        "monitor_group_split": [6000, 6000],
        "monitor_group_agreement": {
            "covariate": {
                "rows": 10_000,
                "same_alerts": {"blocks": True, "group": True},
                "alarm_rows": {"one": [2020], "blocks": [2031], "group": [2047]},
                "alarm_window_rows": [32],
                "alarm_shift_rows": {"blocks": [11], "group": [27]},
                "alerts": {"one": 1, "blocks": 1, "group": 1},
            }
        },
        "rss_mb": {"scorer": 300.0},
        "feature_log": {
            "log": {
                "rows": 1_000_000,
                "write_rows_per_s": 150_000,  # 2.5x the scorer's 60,000
                "lookup_ms_p99": 0.02,
                "disk_mb_per_million_rows": 88.0,
                "healer_rss_mb": 240.0,
            }
        },
    }
    r["targets"] = check_targets(r)
    text = "\n".join(c for _, _, c in bench_rows(r))
    assert all(t.name in text for t in TARGETS)  # every target is shown beside its figure
    printed = format_bench(r)
    assert "FAIL  p99 <= 50 ms at 10k tx/s" in printed and "PASS  heal cycle <= 1 s" in printed
    assert "PASS  feature log writes >= 2x scorer throughput" in printed
    assert "FAIL  monitor >= 2x one scorer" in printed
    assert "PASS  two monitors in a group alarm as one (+-1 window)" in printed
