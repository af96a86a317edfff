"""The heal schedule: when a heal is due, of which kind, and the rows it trains on.

A labelled heal needs ``min_labels`` arrived labels of the episode holding ``min_frauds``
frauds, and runs again once the episode's labels have grown by ``heal_every``, or by
``heal_growth`` of what the last cycle had (up to ``heal_every_max``) if more (evidence, not
traffic, drives it: a cycle on 5% more labels than the last one learns little more); it trains on
the episode's newest ``max_labelled`` labelled rows (more, back to ``train_frauds`` frauds)
and the recent unlabelled ones; labels describing a distribution the stream has since left
are carried to the present (:mod:`~shared.healing.transport`), or waited out. Before that,
a label-free cycle runs every ``label_free_every`` rows on enough of the episode's newest
rows to hold ``label_free_frauds`` frauds at the training rate
(:mod:`~shared.healing.before_labels`). Nothing is due outside an episode, while healing is
paused, or while the label guard holds the labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.bundle import Bundle
from shared.errors import ConfigError
from shared.healing.before_labels import BeforeLabels
from shared.healing.cycle import HealBatch
from shared.healing.episodes import Episode
from shared.healing.join import LabelJoin
from shared.healing.label_guard import LabelGuard
from shared.healing.transport import carry_labels, stale_reason
from shared.healing.types import HealKind


@dataclass(frozen=True)
class ScheduleConfig:
    # a labelled heal: when
    min_labels: int = 100  # arrived labels from the episode needed before a labelled heal
    min_frauds: int = 20  # ... holding this many frauds (rare fraud)
    heal_every: int = 100  # new labels of the episode between labelled cycles, at least
    heal_growth: float = 0.25  # ... or this share of the episode's labels at the last cycle, if more
    # (the gate's standard error shrinks with the root of the labels: a cycle on 5% more learns little)
    heal_every_max: int = 200  # ... the share up to this: a tenth of the training window (max_labelled),
    # so that a drift that keeps moving is followed
    # a labelled heal: on which rows
    max_labelled: int = 2000  # the episode's newest labelled rows a heal trains on (and holds out from)
    train_frauds: int = 100  # ... or more rows, back to the episode's start, until they hold this many frauds
    max_labelled_rows: int = 20_000  # ... but never more rows than this
    label_half_life: float | None = None  # their weight halves every this many rows back (None: equal)
    unlabelled_rows: int = 2000  # the newest unlabelled rows it trains on beside its labels
    label_staleness: float | None = 0.3  # labelled rows' feature medians this many sd from now's: stale
    stale_labels: str = "carry"  # stale labels: "carry" them to the present, or "wait" for fresher ones
    staleness_rows: int = 500  # "wait": the newest rows on each side of the comparison
    # before the labels (shared.labelfree)
    heal_before_labels: bool = True  # until min_labels have arrived, heal without labels
    label_free_rows: int = 2000  # the episode's newest rows a label-free cycle diagnoses
    label_free_frauds: int = 50  # ... or more (to recent_rows): this many frauds at the training rate
    label_free_min_rows: int = 1000  # ... once this many are in memory
    label_free_every: int = 250  # episode rows between label-free cycles
    label_free_confirm: int = 2  # label-free verdicts in a row before one acts (go live / reset)

    def __post_init__(self) -> None:
        if self.heal_every < 1 or self.heal_growth < 0 or self.heal_every_max < 1:
            raise ConfigError(
                f"need heal_every >= 1, heal_growth >= 0 and heal_every_max >= 1; got "
                f"{self.heal_every}, {self.heal_growth}, {self.heal_every_max}"
            )
        if self.stale_labels not in ("carry", "wait"):
            raise ConfigError(f"stale_labels must be 'carry' or 'wait', got {self.stale_labels!r}")


class HealSchedule:
    def __init__(
        self,
        cfg: ScheduleConfig,
        bundle: Bundle,
        join: LabelJoin,
        guard: LabelGuard,
        before: BeforeLabels,
        prior0: float | None,
        *,
        label_free: bool,
        recent_rows: int,
    ) -> None:
        """``prior0``: the training fraud rate (None: unknown; label-free cycles read
        ``label_free_rows``); ``label_free``: no label is coming (no labelled heal);
        ``recent_rows``: the most rows in memory a label-free cycle may read."""
        self.cfg, self.bundle, self.join, self.guard, self.before = cfg, bundle, join, guard, before
        self.prior0, self.label_free, self.recent_rows = prior0, label_free, recent_rows
        self.since_heal = 0  # evidence since the last labelled heal started: the episode's joined labels
        self.last_heal: tuple[float, int] | None = None  # (episode start, its labels) at the last heal
        self.carried: list[str] = []  # features the last job's labelled rows were carried on

    def kind(self, episode: Episode | None, paused: str | None) -> tuple[HealKind | None, str | None]:
        """(the kind, None) when a heal of that kind can start, else (None, why not)."""
        if episode is None:
            return None, "no drift episode"
        if paused is not None:
            return None, paused
        if self.guard.hold is not None:
            return None, self.guard.hold
        have = self.join.labelled_since(episode.start)
        frauds = self.join.frauds_since(episode.start)
        if have >= self.cfg.min_labels and frauds >= self.cfg.min_frauds and not self.label_free:
            stale = self._stale(episode) if self.cfg.stale_labels == "wait" else None
            return (HealKind.LABELS, None) if stale is None else (None, stale)
        before = self._before_labels(episode)
        if before is None:
            return HealKind.LABEL_FREE, None
        held = f"; {len(self.guard.held)} more being checked" if self.guard.held else ""
        wait = (
            f"{have}/{self.cfg.min_labels}"
            if have < self.cfg.min_labels
            else f"{frauds}/{self.cfg.min_frauds} frauds"
        )
        return None, f"waiting for labels ({wait}{held}); {before}"

    def due(self, kind: HealKind | None, episode: Episode | None) -> bool:
        """:meth:`step` new labels of the episode since the last labelled heal, or
        ``label_free_every`` rows since the last label-free cycle."""
        if kind is HealKind.LABEL_FREE:
            return self.before.since >= self.cfg.label_free_every
        return self.since_heal >= self.step(episode)

    def step(self, episode: Episode | None) -> int:
        """New labels the next labelled heal of ``episode`` waits for."""
        cfg = self.cfg
        had = self.last_heal[1] if self.last_heal and episode and self.last_heal[0] == episode.start else 0
        return max(cfg.heal_every, min(int(cfg.heal_growth * had), cfg.heal_every_max))

    def batch(self, episode: Episode, kind: HealKind) -> HealBatch:
        """The rows a heal of ``kind`` trains on now (and the counters restart)."""
        cfg = self.cfg
        if kind is HealKind.LABEL_FREE:
            self.before.since = 0
            X = self.join.recent(episode.start, self._label_free_rows())
            return HealBatch(X, np.full(len(X), np.nan, np.float32))
        self.since_heal = 0
        self.last_heal = (episode.start, self.join.labelled_since(episode.start))
        batch = self.join.batch(
            episode.start,
            cfg.max_labelled,
            cfg.label_half_life,
            cfg.train_frauds,
            cfg.max_labelled_rows,
            cfg.unlabelled_rows,
        )
        if cfg.stale_labels == "carry" and cfg.label_staleness is not None:
            moved, batch = carry_labels(batch, self.bundle.staleness_std, cfg.label_staleness)
            self.carried = [self.bundle.features[k] for k in moved]
        return batch

    def _before_labels(self, episode: Episode) -> str | None:
        """Why no label-free cycle can start now (None: one can)."""
        if not (self.cfg.heal_before_labels or self.label_free):
            return "healing before labels is off"
        if self.before.unavailable is not None:
            return self.before.unavailable
        n = len(self.join.recent(episode.start, self.cfg.label_free_min_rows))
        if n < self.cfg.label_free_min_rows:
            return f"{n}/{self.cfg.label_free_min_rows} rows of the drift to diagnose"
        return None

    def _label_free_rows(self) -> int:
        """Rows a label-free diagnosis reads: enough to hold ``label_free_frauds`` at the
        training fraud rate (a rate estimated on five frauds flips from cycle to cycle)."""
        cfg = self.cfg
        prior = self.prior0 if self.prior0 is not None else 1.0
        return int(min(max(cfg.label_free_rows, cfg.label_free_frauds / max(prior, 1e-6)), self.recent_rows))

    def _stale(self, episode: Episode) -> str | None:
        """Why to wait for fresher labels (``stale_labels="wait"``), if the newest labelled
        rows describe a distribution the stream has since left."""
        limit, n = self.cfg.label_staleness, self.cfg.staleness_rows
        if limit is None:
            return None
        labelled, now = self.join.newest(episode.start, n)
        return stale_reason(labelled, now, self.bundle.staleness_std, self.bundle.features, limit)
