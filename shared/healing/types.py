"""The vocabulary the healing parts share: what a heal trains on (:class:`HealKind`), how a
heal cycle is configured (:class:`HealConfig`) and the rules' targets it trains and judges
on (:class:`RuleTargets`).
It imports nothing of healing's own, so every part may import it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from shared.healing.loss import LossWeights


@dataclass(frozen=True)
class HealConfig:
    steps: int = 20  # optimiser steps per cycle (the research system: 5); with converge, the least
    input_path: bool = True  # a heal may move the adapter's view of the standardised inputs
    converge: bool = True  # with enough labels: train until held-back labels stop improving
    max_steps: int = 300  # ... but at most this many steps
    check_every: int = 10  # ... judged every this many steps
    patience: int = 3  # ... stopping after this many judgements without a better loss
    stop_fraction: float = 0.2  # training labels held back from the gradient to judge that
    min_stop_labels: int = 40  # fewer held-back labels than this: a fixed ``steps``
    lr: float = 3e-3  # Adam learning rate on the adapter
    w_label: float = 0.70  # weight of BCE on arrived labels
    w_rule: float = 0.24  # weight of BCE against rule weak labels (0.3 * 0.8 in the research code)
    w_entropy: float = 0.03  # weight of entropy minimisation, before the cap below
    entropy_max_share: float = 0.5  # the entropy term never exceeds this share of the loss
    pos_weight: float = 1.0  # BCE weight on fraud rows; 1 keeps probabilities calibrated
    class_balance: bool = True  # both classes weigh the same in the label loss (the offset refit: calibrated)
    rule_abstain_label: float | None = None  # label where no rule fires (research code: 0.0)
    rule_reliability: bool = True  # scale each rule by how well arrived labels back it
    grad_clip: float = 1.0  # max gradient norm per step
    holdout_fraction: float = 0.3  # newest arrived labels kept out of training: the gate, the metrics
    min_holdout: int = 30  # fewer held-out labels than this: judge on rules instead
    gate: bool = True  # judge the candidate; False accepts every finite candidate
    min_gain_z: float = 0.0  # held-out log-loss gain must be this many standard errors (paired)
    compare_shadow: bool = True  # the gate also compares with the never-healed adapter
    min_shadow_gain_z: float = 0.5  # held-out cost gain over the shadow must be this many standard errors
    cross_folds: int = 3  # >1: the gain over the shadow is judged out of fold on every arrived label
    look_labels: int | None = 100  # the gate looks again every this many labels: the bar rises with looks
    refit_offset: bool = True  # after the steps, refit the logit offset on arrived labels (prior shift)
    bayes_decisions: bool = True  # a refit (calibrated) candidate decides at the costs' Bayes threshold
    min_offset_labels: int = 50  # labelled training rows (of both classes) needed to refit it
    guard_collapse: bool = True  # refuse candidates that predict one class only
    collapse_rate: float = 0.002  # "one class": the other class predicted on fewer rows than this
    collapse_share: float = 0.1  # ... or, fraud, than this share of the evidence's fraud rate if smaller
    label_free_rate_ratio: float = 1.5  # without held-out labels, the flag rate may change this factor

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def loss_weights(self) -> LossWeights:
        return LossWeights(self.w_label, self.w_rule, self.w_entropy, self.pos_weight, self.entropy_max_share)


@dataclass(frozen=True)
class RuleTargets:
    label: np.ndarray  # (N,) the rules' weak label where one fired
    conf: np.ndarray  # (N,) its weight (0: no rule fired)
    reliability: np.ndarray | None  # per rule, how well arrived labels back it


class HealKind(StrEnum):
    """What a heal trains on (its value is what events and the heal process's frames carry)."""

    LABELS = "labels"  # arrived labels, with the rules and the unlabelled rows beside them
    LABEL_FREE = "label_free"  # the stream alone: a diagnosis and its calibration (shared.labelfree)
