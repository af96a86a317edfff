"""What ``make bench`` runs: backlog sizes, offered rates, rounds."""

from __future__ import annotations

from dataclasses import dataclass

PHASES = ("heal", "featurelog", "throughput", "two_scorers", "latency", "monitor", "profile")


@dataclass(frozen=True)
class BenchConfig:
    rows: int = 200_000  # backlog per throughput run
    rates: tuple[int, ...] = (1000, 3000, 10_000)  # offered transactions/s for the latency runs
    latency_seconds: float = 6.0  # per offered rate, per round
    latency_rounds: int = 5  # interleaved rounds (passthrough, scorer) per rate: medians reported
    warmup_seconds: float = 1.0  # the first sends of each latency run are left out
    swap_rate: int = 2000  # offered rate while adapters are swapped
    swaps: int = 4  # adapters published, one every swap_every seconds
    swap_every: float = 2.0
    rounds: int = 3  # interleaved repetitions of the throughput runs (medians reported)
    quiet_steal: float = 10.0  # before each timed run, wait for a second with less CPU steal (%) ...
    quiet_patience: float = 10.0  # ... but no longer than this (seconds)
    heal_cycles: int = 10  # timed heal cycles (after one warm-up)
    log_rows: int = 1_000_000  # rows through the feature log (and RocksDB beside it)
    scenario: str = "covariate"  # the bundle and the rows sent
    profile: bool = False  # one more scorer run under py-spy: runs/profile-scorer.txt
    only: tuple[str, ...] = ()  # run just these phases (PHASES); () runs them all


QUICK = BenchConfig(  # a smoke run: every phase, small numbers (not for the README)
    rows=20_000,
    rounds=1,
    rates=(1000, 3000),
    latency_seconds=3.0,
    latency_rounds=1,
    swaps=2,
    swap_every=1.0,
    heal_cycles=3,
    log_rows=50_000,
    quiet_patience=0,
)
