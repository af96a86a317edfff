"""FIDI against River's ADWIN, PageHinkley and KSWIN, run per feature on the same streams.

For each drift scenario: the detection delay, in transactions after the drift point, of
FIDI and of each peer's best (earliest) feature, plus alarms before the drift point. On
a long no-drift stream: false-alarm episodes (an alarm less than ``episode_gap`` rows
after the start of the current episode belongs to it, so a detector that fires all the
time counts once per ``episode_gap`` rows; FIDI's own hysteresis is not relied on).
Peers see each feature standardised with the training mean and standard deviation (their
default thresholds assume unit scale); FIDI sees the raw rows with the training reference.

River is a development dependency used only here: ``pip install -e '.[dev]'``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from shared.data.scenarios import build
from shared.data.shapes import Scenario
from shared.drift.fidi import FIDI
from shared.errors import ConfigError
from shared.training import reference, reference_stats

DRIFT_SCENARIOS = ("covariate", "gradual", "new-pattern", "surge", "seed")
PEERS = ("ADWIN", "PageHinkley", "KSWIN")
Progress = Callable[[str], None]


@dataclass
class DetectorRow:
    detector: str
    delays: dict[str, int | None] = field(default_factory=dict)  # scenario -> rows after drift
    features: dict[str, str | None] = field(default_factory=dict)  # scenario -> feature that alarmed first
    pre_drift_alarms: dict[str, int] = field(default_factory=dict)  # scenario -> episodes before drift
    control_episodes: int | None = None
    control_rows: int = 0

    def per_100k(self) -> float | None:
        if self.control_episodes is None or not self.control_rows:
            return None
        return self.control_episodes * 100_000 / self.control_rows


def _peer(name: str) -> Callable[[], Any]:
    try:
        from river import drift
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "the detector comparison needs River, a dev dependency: pip install -e '.[dev]'"
        ) from exc
    if name not in PEERS:
        raise ConfigError(f"unknown peer {name!r}; choose from {', '.join(PEERS)}")
    factory: Callable[[], Any] = getattr(drift, name)
    return factory


def episodes(rows: Iterable[int], gap: int) -> list[int]:
    """First rows of alarm episodes: an alarm within ``gap`` rows of an episode's start is part of it.

    >>> episodes([5, 300, 900, 1100, 2000, 9000], gap=1000)
    [5, 1100, 9000]
    """
    starts: list[int] = []
    for r in sorted(rows):
        if not starts or r - starts[-1] >= gap:
            starts.append(r)
    return starts


def fidi_for(sc: Scenario, **kw: Any) -> FIDI:
    """FIDI with the scenario's training reference (mean, std and quantiles), as a bundle has it."""
    mean, std, quantiles = reference(sc.train.X)
    return FIDI(mean, std, quantiles=quantiles, features=sc.features, **kw)


def fidi_alarms(fidi: FIDI, X: np.ndarray, batch: int = 100) -> list[tuple[int, list[str]]]:
    """Rows (and features) at which FIDI entered drift, fed ``batch`` rows at a time."""
    out = []
    for s in range(0, len(X), batch):
        fidi.update(X[s : s + batch])
        if fidi.drift_detected and fidi.detected_at is not None:
            out.append((s + fidi.detected_at, fidi.drifting_features))
    return out


def peer_alarms(
    name: str,
    X: np.ndarray,
    sc: Scenario,
    stop_after: int | None = None,
) -> list[tuple[int, str]]:
    """Rows (and the feature) at which a per-feature River detector fired.

    Each feature is standardised with the training mean and std of ``sc``. All features
    advance together; with ``stop_after``, the run ends at the first alarm at or after
    that row (the delay is then known)."""
    make = _peer(name)
    features = sc.features
    dets = [make() for _ in features]
    mean, std = reference_stats(sc.train.X)
    z = (np.asarray(X, dtype=np.float64) - mean) / np.maximum(std, 1e-8)
    out: list[tuple[int, str]] = []
    for i, row in enumerate(z.tolist()):
        hit = False
        for j, v in enumerate(row):
            d = dets[j]
            d.update(v)
            if d.drift_detected:
                out.append((i, features[j]))
                hit = True
        if hit and stop_after is not None and i >= stop_after:
            break
    return out


def compare(
    scenarios: Iterable[str] = DRIFT_SCENARIOS,
    *,
    peers: Iterable[str] = PEERS,
    control_rows: int = 100_000,
    slow_control_rows: int = 10_000,
    episode_gap: int = 1000,
    seed: int = 42,
    say: Progress = lambda _: None,
) -> dict[str, Any]:
    """The comparison table as a dict; KSWIN (a KS test per row) sees ``slow_control_rows``."""
    names = list(scenarios)
    peers = list(peers)
    rows = {d: DetectorRow(d) for d in ["FIDI", *peers]}
    t0 = time.perf_counter()
    for name in names:
        sc = build(name, seed=seed)
        at = sc.stream.drift_at
        if at is None:
            raise ConfigError(f"scenario {name!r} has no drift point")
        X = sc.stream.X
        alarms = fidi_alarms(fidi_for(sc), X)
        after = [(r, f) for r, f in alarms if r >= at]
        fidi_row = rows["FIDI"]
        fidi_row.delays[name] = after[0][0] - at if after else None
        fidi_row.features[name] = ", ".join(after[0][1]) if after else None
        fidi_row.pre_drift_alarms[name] = len(episodes([r for r, _ in alarms if r < at], episode_gap))
        for p in peers:
            hits = peer_alarms(p, X, sc, stop_after=at)
            post = [(r, f) for r, f in hits if r >= at]
            rows[p].delays[name] = post[0][0] - at if post else None
            rows[p].features[name] = post[0][1] if post else None
            rows[p].pre_drift_alarms[name] = len(episodes([r for r, _ in hits if r < at], episode_gap))
        say(f"{name}: " + ", ".join(f"{d} {r.delays[name]}" for d, r in rows.items()))
    control = build("control", seed=seed, n_pre=0, n_post=control_rows)
    n_fa = len(episodes([r for r, _ in fidi_alarms(fidi_for(control), control.stream.X)], episode_gap))
    rows["FIDI"].control_episodes, rows["FIDI"].control_rows = n_fa, control_rows
    for p in peers:
        n = slow_control_rows if p == "KSWIN" else control_rows
        hits = peer_alarms(p, control.stream.X[:n], control)
        rows[p].control_episodes = len(episodes([r for r, _ in hits], episode_gap))
        rows[p].control_rows = n
        say(f"control: {p} {rows[p].control_episodes} episodes in {n:,} rows")
    return {
        "scenarios": names,
        "episode_gap": episode_gap,
        "seed": seed,
        "seconds": round(time.perf_counter() - t0, 1),
        "detectors": {d: {**asdict(r), "false_alarms_per_100k": r.per_100k()} for d, r in rows.items()},
    }


def format_table(result: dict[str, Any]) -> str:
    """A markdown table: delay per scenario (pre-drift alarms in brackets) and false alarms."""
    names = result["scenarios"]
    head = "| detector | " + " | ".join(names) + " | false-alarm episodes per 100k no-drift rows |"
    lines = [head, "|" + "---|" * (len(names) + 2)]
    for d, r in result["detectors"].items():
        cells = []
        for n in names:
            delay = r["delays"][n]
            pre = r["pre_drift_alarms"][n]
            cell = "never" if delay is None else f"{delay:,}"
            cells.append(cell + (f" ({pre} before)" if pre else ""))
        fa = r["false_alarms_per_100k"]
        counted = f"{r['control_episodes']} in {r['control_rows']:,} rows"
        fa_cell = f"{fa:.0f} ({counted})" if r["control_rows"] != 100_000 else str(r["control_episodes"])
        lines.append(f"| {d} | " + " | ".join(cells) + f" | {fa_cell} |")
    return "\n".join(lines)
