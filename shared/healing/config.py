"""What the healer's policy can be told: :class:`HealerConfig`, with commented defaults
(:class:`~shared.healing.healer.Healer` reads it; the service and the experiments build it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.healing.cycle import HealConfig
from shared.healing.label_guard import LabelGuardConfig
from shared.healing.own_watch import WatchConfig
from shared.healing.schedule import ScheduleConfig
from shared.healing.shadow_guard import ShadowGuardConfig
from shared.labelfree import LabelFreeConfig
from shared.registry import RollbackPolicy


@dataclass(frozen=True)
class HealerConfig:
    recent_rows: int = 10_000  # newest transactions in memory: the unlabelled rows a heal uses
    label_horizon_ms: float = 30 * 86_400_000  # event time a transaction waits for its label (chargebacks)
    settle_ms: float | None = None  # hold labels until their transaction is this old: its cohort is complete
    # (analysts label only top alerts; chargebacks and implied genuine come later). None: use them on arrival
    imply_ms: float | None = (
        None  # settle at this age instead, and take a logged transaction with no label by
    )
    # then as genuine (your chargeback delay: unchecked fraud has charged back by then, or never will)
    log_budget_bytes: int = 2 << 30  # the feature log's disk budget; past it, a sample is kept
    log_capacity: float | None = None  # rows a second the feature log may write; above it the service
    # logs a sample of the unflagged rows (shared.healing.log_rate). None: half a core, as measured
    label_free: bool = False  # no label is coming: heal before labels only (no labelled heal)
    before_labels: LabelFreeConfig = field(default_factory=LabelFreeConfig)
    default_onset: int = 1000  # rows back an episode starts when its alert names no onset
    quality_rows: int = 100  # arrived labels per live-quality measurement (and per label-guard chunk)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)  # when a heal is due, on which rows
    heal: HealConfig = field(default_factory=HealConfig)
    rollback: RollbackPolicy = field(default_factory=RollbackPolicy)
    shadow_guard: ShadowGuardConfig = field(default_factory=ShadowGuardConfig)  # healing that loses: undone
    label_guard: LabelGuardConfig = field(default_factory=LabelGuardConfig)  # labels judged per quality_rows
    watch: WatchConfig = field(default_factory=WatchConfig)  # its own detectors: loss, residuals, fraud rate
