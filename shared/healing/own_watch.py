"""The healer's own drift detectors, beside the monitor's alerts: what the frozen model
(the bundle's own adapter) says about the stream and about the labels as they arrive.

* ``prior``: its posteriors favour another fraud rate (:mod:`~shared.healing.prior_drift`);
  seen on transactions, before any label.
* ``labels_loss``: its log loss on arrived labels rose (:mod:`~shared.healing.label_drift`);
  the drifts only labels show (a concept switch, a ring on features nobody watched).
* ``labels_residual``: where it errs on arrived labels moved with the inputs
  (:mod:`~shared.healing.residual_drift`); a concept switch that leaves the mean loss
  where it was.

Each change of state is a :class:`Change` the healer hands to its episodes, as one more
detector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from shared.bundle import Bundle
from shared.healing.label_drift import LossWatch
from shared.healing.prior_drift import PriorDrift
from shared.labelfree import LabelFreeReference


@dataclass(frozen=True)
class WatchConfig:
    loss: bool = True  # open an episode when the frozen model's log loss on arrived labels rises
    loss_rows: int = 1000  # ... over its newest this many labelled decisions
    loss_z: float = 4.0  # ... by this many standard errors
    loss_rel: float = 0.1  # ... and this share above its validation loss
    residual: bool = True  # ... or when its residuals on them follow the inputs (a score test)
    residual_rows: int = 3000  # ... over its newest this many labelled decisions
    residual_alpha: float = 1e-6  # ... at this false-alarm rate per test (one every 250 labels)
    prior: bool = True  # open an episode when the frozen model's posteriors favour another fraud rate
    prior_ratio: float = 1.5  # ... the fraud odds times or divided by this (the CUSUM's alternatives)
    # ... its threshold: a false alarm once in at least exp(h) rows (Wald's bound; 22,000 at
    # 10). 14 (1.2 million) saw a fraud rate that tripled from 1% only 13,700 rows in; at 10
    # no stream without drift of the family raised it (docs/robustness.md)
    prior_h: float = 10.0


class Change(NamedTuple):
    detector: str  # "prior", "labels_loss" or "labels_residual"
    state: str  # "drift" or "recovered"
    onset_ts: float | None = None  # event time of the first drifted row, if known
    onset_rows: int | None = None  # ... else rows back from the newest


class OwnWatch:
    def __init__(self, bundle: Bundle, cfg: WatchConfig, ref: LabelFreeReference | None) -> None:
        """Off where the config says so, or where the bundle has no reference rows."""
        self.ref = ref
        model = ref.model if ref is not None else None
        loss = {"rows": cfg.loss_rows, "z": cfg.loss_z, "rel": cfg.loss_rel}
        residual = {"rows": cfg.residual_rows, "alpha": cfg.residual_alpha}
        self.loss = LossWatch.for_bundle(
            bundle,
            loss if cfg.loss else None,
            residual if cfg.residual else None,
            model=model,
        )
        prior = PriorDrift.for_reference(ref, cfg.prior_ratio, cfg.prior_h)
        self.prior = prior if cfg.prior else None

    def on_rows(self, X: np.ndarray) -> list[Change]:
        """Transactions as they arrive (model inputs)."""
        if self.prior is None or self.ref is None or not len(X):
            return []
        state = self.prior.update(self.ref.calibrated(self.ref.logits(X)))
        return [] if state is None else [Change("prior", state, onset_rows=self.prior.onset_rows)]

    def on_labels(self, labels: np.ndarray, rows: np.ndarray) -> list[Change]:
        """Trusted labels with their feature-log rows, in arrival order."""
        if self.loss is None:
            return []
        return [Change(name, state, onset_ts=ts) for name, state, ts in self.loss.update(labels, rows)]
