"""What an offline experiment runs (:class:`ExperimentConfig`) and what it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.bundle import Bundle
from shared.errors import ConfigError
from shared.evaluation import CostMatrix
from shared.experiment.windows import LABELS_SETTLE
from shared.feedback import FeedbackModel
from shared.healing import HealConfig
from shared.healing.healer import HealerConfig
from shared.healing.shadow_guard import ShadowGuardConfig
from shared.registry import Registry

SEED_HEAL = HealConfig(
    steps=5,
    converge=False,
    class_balance=False,
    rule_abstain_label=0.0,
    rule_reliability=False,
    gate=False,
    holdout_fraction=0.0,
    guard_collapse=False,
    compare_shadow=False,
    refit_offset=False,  # none of selfheal's additions: the research system's heal
)
SEED_HEALER = HealerConfig(heal=SEED_HEAL, shadow_guard=ShadowGuardConfig(on=False))


@dataclass(frozen=True)
class ExperimentConfig:
    scenario: str = "seed"
    protocol: str = "delayed"  # "seed" or "delayed"
    label_delay: int = 500  # transactions between a decision and the arrival of its label
    batch_size: int = 100  # rows per scoring batch (and per monitor update)
    seed: int = 42
    n_pre: int = 2000  # clean rows before the drift point (delayed protocol)
    n_post: int = 8000  # rows after it (at least: see stream_post)
    after_rows: int = 5000  # rows of the after-labels window the stream is lengthened to hold
    adapt_window: int = 1000  # rows after the drift point left out of the headline rows
    conflicts_per_100: float = 5.0  # seed protocol: heal when a batch has this many conflicts per 100
    costs: CostMatrix = field(default_factory=CostMatrix)
    healer: HealerConfig | None = None  # the healer's policy; None: the protocol's (seed: SEED_HEALER)
    fidi: dict[str, Any] = field(default_factory=dict)  # FIDI keyword overrides
    poison: tuple[int, int] | None = None  # (first row, rows): labels of these rows arrive flipped
    feedback: FeedbackModel | None = None  # how labels arrive (shared.feedback); None: all, label_delay late

    def __post_init__(self) -> None:
        if self.protocol not in ("seed", "delayed"):
            raise ConfigError(f"protocol must be 'seed' or 'delayed', got {self.protocol!r}")
        if self.label_delay < 0 or self.batch_size < 1:
            raise ConfigError("label_delay must be >= 0 and batch_size >= 1")

    @property
    def stream_post(self) -> int:
        """Rows after the drift point: ``n_post``, or longer so that the labels arrive and
        ``after_rows`` rows follow the after-labels window's start (delayed protocol)."""
        if self.protocol != "delayed" or self.label_free:
            return self.n_post
        last = int(self.feedback.horizon_ms) if self.feedback is not None else self.label_delay
        return max(self.n_post, last + LABELS_SETTLE + self.after_rows)

    @property
    def healer_config(self) -> HealerConfig:
        if self.healer is not None:
            return self.healer
        return SEED_HEALER if self.protocol == "seed" else HealerConfig()

    @property
    def label_free(self) -> bool:
        """No label ever arrives; the healer heals on rules and entropy only."""
        return self.healer_config.label_free


@dataclass
class ExperimentResult:
    config: ExperimentConfig
    summary: dict[str, Any]
    batches: list[dict[str, Any]]
    events: list[dict[str, Any]]
    registry: Registry
    bundle: Bundle
