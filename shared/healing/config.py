"""What the healer's policy can be told: :class:`HealerConfig`, with commented defaults
(:class:`~shared.healing.healer.Healer` reads it; the service and the experiments build it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.errors import ConfigError
from shared.healing.cycle import HealConfig
from shared.healing.label_guard import LabelGuardConfig
from shared.healing.own_watch import WatchConfig
from shared.healing.shadow_guard import ShadowGuardConfig
from shared.labelfree import LabelFreeConfig
from shared.registry import RollbackPolicy


@dataclass(frozen=True)
class HealerConfig:
    recent_rows: int = 10_000  # newest transactions in memory: the unlabelled rows a heal uses
    unlabelled_rows: int = 2000  # ... of them, the newest a labelled heal trains on beside its labels
    label_horizon_ms: float = 30 * 86_400_000  # event time a transaction waits for its label (chargebacks)
    settle_ms: float | None = None  # hold labels until their transaction is this old: its cohort is complete
    # (analysts label only top alerts; chargebacks and implied genuine come later). None: use them on arrival
    log_budget_bytes: int = 2 << 30  # the feature log's disk budget; past it, a sample is kept
    max_labelled: int = 2000  # the episode's newest labelled rows a heal trains on (and holds out from)
    train_frauds: int = 100  # ... or more rows, back to the episode's start, until they hold this many frauds
    max_labelled_rows: int = 20_000  # ... but never more rows than this
    min_frauds: int = 20  # arrived fraud labels of the episode before a labelled heal (rare fraud)
    label_half_life: float | None = None  # their weight halves every this many rows back (None: equal)
    min_labels: int = 100  # arrived labels from the episode needed before a labelled heal
    label_free: bool = False  # no label is coming: heal before labels only (no labelled heal)
    heal_before_labels: bool = True  # until min_labels have arrived, heal without labels (shared.labelfree)
    before_labels: LabelFreeConfig = field(default_factory=LabelFreeConfig)
    label_free_rows: int = 2000  # the episode's newest rows a label-free cycle diagnoses
    label_free_frauds: int = 50  # ... or more (to recent_rows): this many frauds at the training rate
    label_free_min_rows: int = 1000  # ... once this many are in memory
    label_free_every: int = 250  # episode rows between label-free cycles
    label_free_confirm: int = 2  # label-free verdicts in a row before one acts (go live / reset)
    label_staleness: float | None = 0.3  # labelled rows' feature medians this many sd from now's: stale
    stale_labels: str = "carry"  # stale labels: "carry" them to the present, or "wait" for fresher ones
    staleness_rows: int = 500  # "wait": the newest rows on each side of the comparison
    heal_every: int = 100  # new labels of the episode between labelled cycles, at least
    heal_growth: float = 0.25  # ... or this share of the episode's labels at the last cycle, if more
    # (the gate's standard error shrinks with the root of the labels: a cycle on 5% more learns little)
    heal_every_max: int = 200  # ... the share up to this: a tenth of the training window (max_labelled),
    # so that a drift that keeps moving is followed
    default_onset: int = 1000  # rows back an episode starts when its alert names no onset
    quality_rows: int = 100  # arrived labels per live-quality measurement (and per label-guard chunk)
    heal: HealConfig = field(default_factory=HealConfig)
    rollback: RollbackPolicy = field(default_factory=RollbackPolicy)
    shadow_guard: ShadowGuardConfig = field(default_factory=ShadowGuardConfig)  # healing that loses: undone
    label_guard: LabelGuardConfig = field(default_factory=LabelGuardConfig)  # labels judged per quality_rows
    watch: WatchConfig = field(default_factory=WatchConfig)  # its own detectors: loss, residuals, fraud rate

    def __post_init__(self) -> None:
        if self.heal_every < 1 or self.heal_growth < 0 or self.heal_every_max < 1:
            raise ConfigError(
                f"need heal_every >= 1, heal_growth >= 0 and heal_every_max >= 1; got "
                f"{self.heal_every}, {self.heal_growth}, {self.heal_every_max}"
            )
        if self.stale_labels not in ("carry", "wait"):
            raise ConfigError(f"stale_labels must be 'carry' or 'wait', got {self.stale_labels!r}")
