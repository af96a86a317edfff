"""One heal cycle (``heal_cycle``): a candidate adapter from a buffer of recent rows, and whether to trust it.

The live model is never touched: the cycle trains a copy of the adapter on the frozen
backbone's features (computed once), with both classes weighing the same in the label
loss (``class_balance``; the logit-offset refit then restores the arrived fraud rate),
then gathers what the gate (:mod:`shared.healing.gate`) judges the candidate on, against
the current adapter:

* with enough arrived labels, the newest ``holdout_fraction`` of them are held out of
  training; on them the candidate must lower log loss against the current adapter (a
  paired z-test over the rows, ``min_gain_z``) without raising expected cost, and must
  not cost more than the *shadow* (the bundle's own adapter, "never healed") on the same
  rows; ``min_shadow_gain_z`` > 0 asks for a gain of that many standard errors of the
  paired cost difference (a bar in standard errors: the gain it asks for shrinks as
  labels grow the held-out set), and ``cross_folds`` > 1 judges that on every arrived
  label out of fold (a heal that still loses to never healing on live decisions is
  undone by the healer's shadow guard, see :mod:`shared.healing.healer`);
* without them, it must agree better with the rules' weak labels while its flag rate
  stays within ``label_free_rate_ratio`` of the current one (rules are mostly one-sided,
  "this is fraud", so agreeing with them alone would flag everything);
* and in every case it must not collapse to one class while the evidence shows both,
  nor hold a non-finite weight.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from shared.evaluation import CostMatrix, metrics_from_predictions, paired_z
from shared.healing.fit import (
    log_loss,
    refit_offset,
    refits,
    row_log_loss,
    starts,
    stopping_rows,
    train_candidate,
)
from shared.healing.gate import (
    GateEvidence,
    HeldOut,
    RuleAgreement,
    Verdict,
    VersusShadow,
    decide,
    finite,
)
from shared.healing.types import HealConfig as HealConfig
from shared.healing.types import RuleTargets
from shared.model import AdapterState, ReflexiveLayer, SelfHealingModel
from shared.rules import RuleSet


@dataclass(frozen=True)
class HealBatch:
    """Rows to heal on, labelled ones first, each part oldest first; ``y`` is NaN where no
    label has arrived, ``w`` weighs each labelled row in the label loss (None: equally)."""

    X: np.ndarray  # (N, d) float32
    y: np.ndarray  # (N,) float32
    w: np.ndarray | None = None  # (N,) float32

    @property
    def n_labelled(self) -> int:
        return int((~np.isnan(self.y)).sum())


@dataclass
class HealResult:
    adapter: AdapterState  # the candidate
    accepted: bool
    reason: str
    terms: dict[str, float] = field(default_factory=dict)  # loss terms, mean over steps
    metrics: dict[str, float] = field(default_factory=dict)  # before/after, see heal_cycle
    duration_ms: float = 0.0
    diagnosis: dict[str, Any] | None = None  # a label-free cycle's diagnosis (shared.labelfree)
    verdict: Verdict | None = None  # the gate's verdict (None: not recorded, e.g. a result built by hand)
    evidence: GateEvidence | None = None  # what the gate judged on (None: it judged nothing)


def heal_cycle(
    model: SelfHealingModel,
    batch: HealBatch,
    rules: RuleSet,
    threshold: float,
    costs: CostMatrix,
    config: HealConfig | None = None,
    shadow: AdapterState | None = None,
) -> HealResult:
    """Train a candidate adapter on ``batch`` and judge it against the current adapter (and
    ``shadow``, the never-healed one, when given); ``model`` stays as it was."""
    cfg = config or HealConfig()
    t0 = time.perf_counter()

    def took() -> float:
        return (time.perf_counter() - t0) * 1e3

    model.freeze_base()
    X = np.asarray(batch.X, dtype=np.float32)
    y = np.asarray(batch.y, dtype=np.float32)
    hold, train = _holdout(y, cfg)
    targets = _rule_targets(rules, X, y, train, cfg)
    before_state = model.adapter_state()
    if _evidence(y, targets, train) == 0:
        why = "no evidence: no arrived label and no rule fired"
        return HealResult(before_state, False, why, duration_ms=took(), verdict=Verdict.NO_EVIDENCE)
    xt = torch.as_tensor(X)
    with torch.no_grad():
        H_before = model.hidden(xt)  # (N, hidden): the frozen part under the live calibration, once
    data = _Rows(xt, y, batch.w, targets)
    found = _best_candidate(model, data, train, cfg)
    if isinstance(found, dict):
        return HealResult(
            before_state, False, "non-finite loss", found, duration_ms=took(), verdict=Verdict.NON_FINITE
        )
    layer, H, sums, start = found
    scales = _Scales(float(model.reflexive.decision_shift), bayes_shift(threshold, costs, cfg))
    sums["decision_shift"] = shift = scales.of(refits(y, train, cfg))
    with torch.no_grad():
        z_before = model.logits_from_hidden(H_before)
        z_after = model.logits_from_hidden(H, layer)  # the candidate's own scale (no decision shift)
        layer.decision_shift.fill_(shift)
    candidate = {k: v.detach().clone() for k, v in layer.state_dict().items()}
    judged = _Judged(
        y,
        hold,
        train,
        targets,
        p_before=torch.sigmoid(z_before).numpy(),
        p_after=torch.sigmoid(z_after + shift).numpy(),
        p_before_own=torch.sigmoid(z_before - scales.live).numpy(),
        p_after_own=torch.sigmoid(z_after).numpy(),
        threshold=threshold,
        costs=costs,
    )
    vs_shadow = None
    if shadow is not None and cfg.compare_shadow and len(hold):
        vs_shadow = _shadow_evidence(model, data, H, judged, start, cfg, shadow, scales)
    evidence = _gate_evidence(judged, vs_shadow)
    metrics = evidence.as_metrics()
    if targets.reliability is not None:
        metrics.update(
            {
                f"rule_reliability.{name}": float(r)
                for name, r in zip(rules.names, targets.reliability, strict=True)
            }
        )
    decision = decide(candidate, evidence, cfg)
    if not finite(candidate):  # refused; the registry records the adapter it started from
        candidate = before_state
    return HealResult(
        candidate,
        decision.accepted,
        decision.reason,
        sums,
        metrics,
        took(),
        verdict=decision.verdict,
        evidence=evidence,
    )


@dataclass(frozen=True)
class _Rows:
    """A heal's rows as training sees them."""

    xt: torch.Tensor  # (N, d) inputs
    y: np.ndarray  # (N,) labels, NaN where none arrived
    w: np.ndarray | None  # (N,) label weights as the batch gives them (recency), None: equal
    targets: RuleTargets

    def weights(self, train: np.ndarray, cfg: HealConfig) -> np.ndarray:
        """Label weights for training on ``train``: class-balanced there when the offset refit
        can take the training prior back out."""
        y = self.y
        w = np.ones(len(y), np.float32) if self.w is None else np.asarray(self.w, dtype=np.float32)
        if cfg.class_balance and cfg.refit_offset and (train & ~np.isnan(y)).sum() >= cfg.min_offset_labels:
            w = class_balanced(w, y, train)
        return w


def bayes_shift(threshold: float, costs: CostMatrix, cfg: HealConfig) -> float | None:
    """The decision shift of a calibrated candidate: ``logit(threshold) - logit(bayes)``, so
    that the bundle's threshold decides as the cost matrix's Bayes threshold on its
    probabilities (None: ``bayes_decisions`` is off).

    >>> round(bayes_shift(0.5, CostMatrix(fp=1.0, fn=10.0), HealConfig()), 3)   # Bayes: 1/11
    2.303
    """
    if not cfg.bayes_decisions:
        return None
    t = min(max(threshold, 1e-7), 1 - 1e-7)
    b = costs.bayes_threshold
    return float(np.log(t / (1 - t)) - np.log(b / (1 - b)))


@dataclass(frozen=True)
class _Scales:
    """Where a candidate's scores live: the live adapter's decision shift, and the shift of
    a calibrated candidate (:func:`bayes_shift`)."""

    live: float
    bayes: float | None

    def of(self, refit: bool) -> float:
        """A candidate whose offset was refit on labels (:func:`refits`) is calibrated: it
        decides at Bayes; any other keeps the live adapter's scale."""
        return self.bayes if self.bayes is not None and refit else self.live


@dataclass(frozen=True)
class _Judged:
    """What the gate judges a candidate on: the rows' labels and how they were split, the
    rule targets, the current and the candidate adapter's scores (decided at ``threshold``)
    and probabilities (judged by log loss), the cost rule."""

    y: np.ndarray  # (N,) labels, NaN where none arrived
    hold: np.ndarray  # indices of the held-out labelled rows
    train: np.ndarray  # (N,) mask of the rows training saw
    targets: RuleTargets
    p_before: np.ndarray  # (N,) the current adapter's scores, as the scorer would decide on them
    p_after: np.ndarray  # (N,) the candidate's
    p_before_own: np.ndarray  # (N,) the current adapter's probabilities (without its decision shift)
    p_after_own: np.ndarray  # (N,) the candidate's: log loss is judged on these
    threshold: float
    costs: CostMatrix


def _holdout(y: np.ndarray, cfg: HealConfig) -> tuple[np.ndarray, np.ndarray]:
    """(held-out rows: the newest ``holdout_fraction`` of the arrived labels, training mask)."""
    labelled_idx = np.flatnonzero(~np.isnan(y))
    n_hold = int(len(labelled_idx) * cfg.holdout_fraction)
    if n_hold < cfg.min_holdout:
        n_hold = 0
    hold = labelled_idx[len(labelled_idx) - n_hold :] if n_hold else labelled_idx[:0]
    train = np.ones(len(y), dtype=bool)
    train[hold] = False
    return hold, train


def class_balanced(w: np.ndarray, y: np.ndarray, train: np.ndarray) -> np.ndarray:
    """``w`` scaled so that each class's labelled training rows carry half the weight.

    >>> y = np.array([1, 0, 0, 0, np.nan], np.float32)
    >>> [round(float(v), 3) for v in class_balanced(np.ones(5, np.float32), y, np.ones(5, bool))]
    [2.0, 0.667, 0.667, 0.667, 1.0]
    """
    out = w.astype(np.float32, copy=True)
    lab = train & ~np.isnan(y)
    total = float(w[lab].sum())
    for c in (0.0, 1.0):
        rows = lab & (y == c)
        mass = float(w[rows].sum())
        if mass > 0 and mass < total:
            out[rows] *= 0.5 * total / mass
    return out


def _rule_targets(
    rules: RuleSet, X: np.ndarray, y: np.ndarray, train: np.ndarray, cfg: HealConfig
) -> RuleTargets:
    fired = rules.fires(X)
    reliability = rules.reliability(fired[train], y[train]) if cfg.rule_reliability else None
    rule_label, rule_conf = rules.weak_labels(X, fired, reliability)
    if cfg.rule_abstain_label is not None:
        silent = rule_conf == 0
        rule_label[silent], rule_conf[silent] = cfg.rule_abstain_label, 1.0
    return RuleTargets(rule_label, rule_conf, reliability)


def _evidence(y: np.ndarray, targets: RuleTargets, train: np.ndarray) -> int:
    """Training rows with an arrived label, plus training rows a rule fired on."""
    return int((~np.isnan(y[train])).sum()) + int((targets.conf[train] > 0).sum())


def _best_candidate(
    model: SelfHealingModel, data: _Rows, train: np.ndarray, cfg: HealConfig
) -> tuple[ReflexiveLayer, torch.Tensor, dict[str, float], int] | dict[str, float]:
    """The trained candidate (with the frozen features it saw, and which start it came from)
    of one per start that fits best the labels held back from its gradient
    (:func:`stopping_rows`; without them, the training labels); the loss terms alone when a
    loss stopped being finite."""
    best: tuple[float, ReflexiveLayer, torch.Tensor, dict[str, float], int] | None = None
    y = data.y
    split = stopping_rows(y, train, cfg)
    compare_on = train if split[1] is None else ~split[0] & train
    w = data.weights(train, cfg)
    for k, start in enumerate(starts(model)):
        with torch.no_grad():
            H = model.hidden(data.xt, start)
        layer, sums = train_candidate(model, start, H, y, w, data.targets, split, cfg)
        if layer is None:
            return sums
        refit_offset(model, layer, H, y, train, cfg, sums, data.w)
        fit = _fit_loss(model, layer, H, y, compare_on)
        if best is None or fit < best[0]:
            best = (fit, layer, H, sums | {"calibration_kept": float(start.calibrated)}, k)
    assert best is not None
    return best[1], best[2], best[3], best[4]


def _shadow_evidence(
    model: SelfHealingModel,
    data: _Rows,
    H: torch.Tensor,
    judged: _Judged,
    start: int,
    cfg: HealConfig,
    shadow: AdapterState,
    scales: _Scales,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, candidate probabilities, shadow probabilities) the gate compares with the shadow
    on: the held-out rows and, with ``cross_folds`` > 1, every labelled training row too, each
    predicted by a candidate trained the same way without its fold (out of fold: evidence that
    grows with all the labels that have arrived, not a fraction of them). ``H``: the frozen
    features under start ``start``, as the candidate saw them; each fold trains from a fresh
    copy of that start on the same features."""
    train, hold, p_after = judged.train, judged.hold, judged.p_after
    rows, probs = [hold], [p_after[hold]]
    labelled = np.flatnonzero(train & ~np.isnan(data.y))
    folds = cfg.cross_folds - 1
    if folds > 0 and len(labelled) >= folds * cfg.min_holdout:
        for chunk in np.array_split(labelled, folds):
            fit = train.copy()
            fit[chunk], fit[hold] = False, True
            layer = starts(model)[start]
            w = data.weights(fit, cfg)
            trained, sums = train_candidate(
                model, layer, H, data.y, w, data.targets, stopping_rows(data.y, fit, cfg), cfg
            )
            if trained is None:
                return hold, p_after[hold], _probs(model, data.xt[hold], shadow)
            refit_offset(model, trained, H, data.y, fit, cfg, sums, data.w)
            with torch.no_grad():
                shift = scales.of(refits(data.y, fit, cfg))
                z = model.logits_from_hidden(H[torch.as_tensor(chunk)], trained) + shift
                probs.append(torch.sigmoid(z).numpy())
            rows.append(chunk)
    idx = np.concatenate(rows)
    return idx, np.concatenate(probs), _probs(model, data.xt[idx], shadow)


def _probs(model: SelfHealingModel, x: torch.Tensor, state: AdapterState) -> np.ndarray:
    with torch.no_grad():
        return torch.sigmoid(model.logits(x, model.new_adapter(state))).numpy()


def _fit_loss(
    model: SelfHealingModel, layer: ReflexiveLayer, H: torch.Tensor, y: np.ndarray, train: np.ndarray
) -> float:
    """Log loss on the labelled rows of ``train``: how the starts are compared (the held-out
    labels stay the gate's alone, not spent twice)."""
    rows = np.flatnonzero(train & ~np.isnan(y))
    if not len(rows):
        return 0.0
    with torch.no_grad():
        p = torch.sigmoid(model.logits_from_hidden(H[torch.as_tensor(rows)], layer)).numpy()
    return log_loss(y[rows], p)


def _gate_evidence(
    judged: _Judged, vs_shadow: tuple[np.ndarray, np.ndarray, np.ndarray] | None
) -> GateEvidence:
    """What the gate judges on: current vs candidate on the held-out rows, candidate vs
    shadow on the rows of :func:`_shadow_evidence`, and both against the rules."""
    j = judged
    y, hold, t, costs = j.y, j.hold, j.threshold, j.costs
    labelled = ~np.isnan(y)
    evidence = y[labelled] if labelled.any() else j.targets.label[j.targets.conf > 0]
    held_out = shadow = None
    if len(hold):
        yh, pb, pa = y[hold], j.p_before[hold], j.p_after[hold]
        qb, qa = j.p_before_own[hold], j.p_after_own[hold]  # log loss: on the probabilities
        before, after = (
            metrics_from_predictions(yh, pb >= t, costs),
            metrics_from_predictions(yh, pa >= t, costs),
        )
        held_out = HeldOut(
            cost_before=before.cost,
            cost_after=after.cost,
            logloss_before=log_loss(yh, qb),
            logloss_after=log_loss(yh, qa),
            f1_before=before.f1,
            f1_after=after.f1,
            accuracy_before=before.accuracy,
            accuracy_after=after.accuracy,
            logloss_gain_z=paired_z(row_log_loss(yh, qb) - row_log_loss(yh, qa)),
            cost_gain_z=paired_z(costs.per_row(yh, pb >= t) - costs.per_row(yh, pa >= t)),
        )
    live = None
    if vs_shadow is not None:
        rows, p_c, p_s = vs_shadow
        shadow = _versus_shadow(y[rows], p_c, p_s, t, costs)
        if len(hold):
            # the live adapter on the same rows: no heal trained on the held-out ones; a
            # labelled heal may have on the others, which only makes it look better
            live = _versus_shadow(y[rows], j.p_before[rows], p_s, t, costs)
    return GateEvidence(
        pos_rate_before=float((j.p_before >= t).mean()),
        pos_rate_after=float((j.p_after >= t).mean()),
        evidence_fraud_rate=float(evidence.mean()) if len(evidence) else float("nan"),
        n_rows=len(y),
        n_labelled=int(labelled.sum()),
        n_holdout=len(hold),
        n_rule=int((j.targets.conf[j.train] > 0).sum()),
        held_out=held_out,
        shadow=shadow,
        rules=_rule_agreement(j),
        live=live,
    )


def _versus_shadow(
    y: np.ndarray, p: np.ndarray, p_shadow: np.ndarray, t: float, costs: CostMatrix
) -> VersusShadow:
    """Decisions at ``t`` from ``p`` against the shadow's on the same labelled rows."""
    return VersusShadow(
        rows=len(y),
        cost_candidate=metrics_from_predictions(y, p >= t, costs).cost,
        cost_shadow=metrics_from_predictions(y, p_shadow >= t, costs).cost,
        logloss_shadow=log_loss(y, p_shadow),
        gain_z=paired_z(costs.per_row(y, p_shadow >= t) - costs.per_row(y, p >= t)),
    )


def _rule_agreement(j: _Judged) -> RuleAgreement | None:
    ruled = j.train & (j.targets.conf > 0)
    if not ruled.any():
        return None
    w, said = j.targets.conf[ruled], j.targets.label[ruled] >= 0.5

    def agreement(p: np.ndarray) -> float:
        agree = ((p[ruled] >= j.threshold) == said).astype(np.float64)
        return float((agree * w).sum() / w.sum())

    return RuleAgreement(agreement(j.p_before), agreement(j.p_after))
