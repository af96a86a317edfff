"""Training one candidate adapter on a heal's rows: Adam on the composite loss, to
convergence on labels held back from the gradient when there are enough of them (early
stopping: the best state on them is kept), else a fixed number of steps."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from shared.healing.loss import composite_loss
from shared.model import ReflexiveLayer, SelfHealingModel

if TYPE_CHECKING:
    from shared.healing.types import HealConfig, RuleTargets


def train_candidate(
    model: SelfHealingModel,
    layer: ReflexiveLayer,
    H: torch.Tensor,
    y: np.ndarray,
    w: np.ndarray,
    targets: RuleTargets,
    split: tuple[np.ndarray, np.ndarray | None],
    cfg: HealConfig,
) -> tuple[ReflexiveLayer | None, dict[str, float]]:
    """``layer`` (a copy of the adapter) trained with Adam on the composite loss over the
    rows ``split`` (:func:`stopping_rows`) lets the gradient see: to convergence on the rows
    it holds back, else ``cfg.steps`` steps; None if the loss stopped being finite. Returns
    it with the loss terms (mean over steps) and the steps taken."""
    fit, judge = split
    tr = torch.as_tensor(fit)
    yt, wt, rl, rc = (torch.as_tensor(a)[tr] for a in (y, w, targets.label, targets.conf))
    layer.train()
    params = [
        p
        for name, p in layer.named_parameters()
        if p.requires_grad and (cfg.input_path or not name.startswith("input_path."))
    ]
    # fused: one kernel for every tensor, a third of a step's time
    opt = torch.optim.Adam(params, lr=cfg.lr, fused=True)
    totals: dict[str, float] = {}
    stopper = Stopper(model, layer, H, y, judge, cfg, w if cfg.class_balance else None)
    steps, H_fit = 0, H[tr]
    while steps < (cfg.max_steps if judge is not None else cfg.steps):
        logits = model.logits_from_hidden(H_fit, layer)
        loss, terms = composite_loss(logits, yt, rl, rc, cfg.loss_weights, label_weight=wt)
        if not torch.isfinite(loss):
            return None, terms
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        steps += 1
        for k, v in terms.items():
            totals[k] = totals.get(k, 0.0) + v
        if stopper.done(steps):
            break
    stopper.restore_best()
    layer.eval()
    return layer, {k: v / steps for k, v in totals.items()} | {"steps": float(steps)}


def stopping_rows(y: np.ndarray, train: np.ndarray, cfg: HealConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """(rows the gradient sees, labelled rows held back to stop on, or None for fixed steps):
    every ``1/stop_fraction``-th labelled training row, so old and new labels both judge."""
    labelled = np.flatnonzero(train & ~np.isnan(y))
    every = max(2, round(1 / cfg.stop_fraction)) if cfg.stop_fraction > 0 else 0
    judge = labelled[every - 1 :: every] if cfg.converge and every else labelled[:0]
    if len(judge) < cfg.min_stop_labels or len(np.unique(y[judge])) < 2:
        return train, None
    fit = train.copy()
    fit[judge] = False
    return fit, judge


class Stopper:
    """Early stopping on held-back labels: the log loss every ``check_every`` steps, the
    best state kept, done after ``patience`` judgements without a better one."""

    def __init__(
        self,
        model: SelfHealingModel,
        layer: ReflexiveLayer,
        H: torch.Tensor,
        y: np.ndarray,
        judge: np.ndarray | None,
        cfg: HealConfig,
        w: np.ndarray | None = None,  # row weights (class balance): the loss it stops on is weighted too
    ) -> None:
        self.model, self.layer, self.cfg = model, layer, cfg
        self.H = H[torch.as_tensor(judge)] if judge is not None else None
        self.y = y[judge] if judge is not None else None
        self.w = w[judge] if judge is not None and w is not None else None
        self.best: tuple[float, dict[str, torch.Tensor]] | None = None
        self.misses = 0

    def done(self, steps: int) -> bool:
        if self.H is None or self.y is None or steps < self.cfg.steps or steps % self.cfg.check_every:
            return False
        with torch.no_grad():
            p = torch.sigmoid(self.model.logits_from_hidden(self.H, self.layer)).numpy()
        loss = log_loss(self.y, p, self.w)
        if self.best is None or loss < self.best[0] - 1e-5:
            self.best = (loss, {k: v.detach().clone() for k, v in self.layer.state_dict().items()})
            self.misses = 0
            return False
        self.misses += 1
        return self.misses >= self.cfg.patience

    def restore_best(self) -> None:
        if self.best is not None:
            self.layer.load_state_dict(self.best[1])


def row_log_loss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return -(y * np.log(q) + (1 - y) * np.log1p(-q))  # type: ignore[no-any-return]


def log_loss(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None) -> float:
    return float(np.average(row_log_loss(y, p), weights=w))


def starts(model: SelfHealingModel) -> list[ReflexiveLayer]:
    """Where a labelled cycle starts: the live adapter; when it calibrates its inputs (a
    label-free heal), also the live adapter with that calibration undone, so that labels
    can refine it or take it back. Each starts without the live adapter's decision shift:
    a candidate trains, and is calibrated, on its probabilities' own scale."""
    live = model.new_adapter()
    live.decision_shift.zero_()
    if not live.calibrated:
        return [live]
    undone = model.new_adapter()
    undone.decision_shift.zero_()
    undone.input_scale.fill_(1.0)
    undone.input_shift.zero_()
    return [live, undone]


def refits(y: np.ndarray, train: np.ndarray, cfg: HealConfig) -> bool:
    """Whether :func:`refit_offset` refits on the labelled rows of ``train``: it is on, they
    are ``min_offset_labels`` or more, and both classes are among them. A candidate refit so
    is calibrated on its labels."""
    lab = train & ~np.isnan(y)
    return bool(cfg.refit_offset and lab.sum() >= cfg.min_offset_labels and 0 < y[lab].mean() < 1)


def refit_offset(
    model: SelfHealingModel,
    layer: ReflexiveLayer,
    H: torch.Tensor,
    y: np.ndarray,
    train: np.ndarray,
    cfg: HealConfig,
    sums: dict[str, float],
    w: np.ndarray | None = None,
) -> None:
    """Refit the candidate's logit offset on its labelled training rows (a prior shift),
    when :func:`refits` says so; ``w``: the rows' weights (from a sampled log, each row for
    the unflagged rows the sample left out beside it)."""
    if refits(y, train, cfg):
        lab = train & ~np.isnan(y)
        with torch.no_grad():
            z = model.logits_from_hidden(H[torch.as_tensor(lab)], layer).numpy()
        delta = fit_logit_offset(z, y[lab], w=None if w is None else w[lab])
        model.shift_logit(layer, delta)  # into the bias: a fixed offset healed covariate less (1.15 vs 1.31)
        sums["logit_offset"] = delta


def fit_logit_offset(
    z: np.ndarray, y: np.ndarray, l2: float = 1e-3, iters: int = 25, w: np.ndarray | None = None
) -> float:
    """The constant ``delta`` minimising mean log loss of ``sigmoid(z + delta)`` against ``y``
    (Newton's method; ``l2`` keeps it finite on one-class data). A fraud-rate surge moves
    every log-odds by the same amount, so this one number corrects a prior shift.

    >>> z = np.zeros(1000); y = (np.arange(1000) < 400).astype(float)   # 40% positives
    >>> round(fit_logit_offset(z, y), 2)                       # log(0.4 / 0.6) = -0.405, less the l2 pull
    -0.4
    """
    z64, y64 = np.asarray(z, dtype=np.float64), np.asarray(y, dtype=np.float64)
    wn = np.ones_like(y64) if w is None else np.asarray(w, dtype=np.float64) / float(np.mean(w))
    delta = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(z64 + delta)))
        grad = float((wn * (p - y64)).mean()) + l2 * delta
        hess = float((wn * p * (1 - p)).mean()) + l2
        step = grad / hess
        delta -= float(np.clip(step, -2.0, 2.0))
        if abs(step) < 1e-6:
            break
    return delta
