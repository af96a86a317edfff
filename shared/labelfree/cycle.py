"""The label-free heal cycle: a diagnosis, the candidate it implies, and a gate without labels.

The candidate is the bundle's own adapter with the diagnosis's input calibration and logit
offset (both are relative to the training reference, so it never stacks on an earlier
heal). Without labels the gate cannot measure the candidate's cost, so it checks what can
be checked (each refusal names the check):

* **estimated cost** (CBPE, as NannyML does it): each row's expected cost given its
  decision, from the candidate's calibrated probabilities (the diagnosis's belief about
  today's rows); the candidate's decisions must not cost more than the live adapter's
  under that belief. It assumes the belief is right, i.e. no concept drift, which is why
  it only ever judges a diagnosis that found none; the realised cost, once labels come,
  is what tells (``estimated_cost`` beside ``realised_cost`` in the registry and metrics);
* **flag rate**: the candidate must flag what its own diagnosis predicts (the fraud rate
  times the TPR of its own decision on the validation rows, offset included, plus the rest
  times its FPR) within ``rate_ratio``, and may not move the flag rate further than
  ``max_rate_change`` beyond both the live adapter's and the validation rows' (a drift that
  silenced the model is undone by flagging again), times the diagnosed fraud rate's own
  move (four times the fraud means about four times the alerts);
* **trusted rules**: of the rows a rule fires on (in training units), the candidate must
  flag at least the share the model flagged on the validation rows, less ``rule_slack``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from shared.evaluation import CostMatrix
from shared.healing.cycle import HealResult
from shared.healing.gate import Decision, Verdict
from shared.labelfree.diagnosis import Diagnosis, DiagnosisConfig, diagnose
from shared.labelfree.reference import LabelFreeReference
from shared.model import CALIBRATION_KEYS, ReflexiveLayer, SelfHealingModel


@dataclass(frozen=True)
class LabelFreeConfig:
    diagnosis: DiagnosisConfig = field(default_factory=DiagnosisConfig)
    gate: bool = True  # False: accept every candidate a healing diagnosis implies (ablation)
    rate_ratio: float = 1.5  # the candidate's flag rate within this factor of its diagnosis's prediction
    max_rate_change: float = 3.0  # ... and of the live adapter's flag rate
    rule_slack: float = 0.1  # the share of rule-fired rows flagged may fall this far below the reference
    same_scale: float = 0.05  # a calibration this close to the live one (relative) is the same
    same_shift: float = 0.1  # ... (in training sd)
    same_offset: float = 0.2  # ... and a logit offset this close

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LabelFreeConfig:
        diag = dict(d.get("diagnosis", {}))
        if "levels" in diag:
            diag["levels"] = tuple(diag["levels"])
        return cls(**{**d, "diagnosis": DiagnosisConfig(**diag)})


def label_free_cycle(
    model: SelfHealingModel,
    X: np.ndarray,
    ref: LabelFreeReference,
    threshold: float,
    costs: CostMatrix,
    config: LabelFreeConfig | None = None,
) -> HealResult:
    """Diagnose the rows ``X`` and judge the candidate it implies against ``model``'s
    adapter (the live one); ``model`` stays as it was."""
    cfg = config or LabelFreeConfig()
    t0 = time.perf_counter()
    dg = diagnose(ref, X, cfg.diagnosis)
    live = model.new_adapter()
    details = dg.details()
    if not dg.heals:
        return _result(
            model, Decision(Verdict.NO_HEAL_DIAGNOSED, f"{dg.action}: {dg.reason}"), {}, details, t0
        )
    cand = model.new_adapter(ref.adapter)
    cand.input_scale.copy_(torch.as_tensor(dg.scale, dtype=torch.float32))
    cand.input_shift.copy_(torch.as_tensor(dg.shift, dtype=torch.float32))
    cand.logit_offset.fill_(dg.offset)
    if _same(live, cand, ref, cfg):
        details["live_already"] = 1
        why = f"unchanged: the live adapter already does this ({dg.reason})"
        return _result(model, Decision(Verdict.ALREADY_LIVE, why), {}, details, t0)
    xt = torch.as_tensor(np.asarray(X, np.float32))
    with torch.no_grad():
        z_live, z_cand = model.logits(xt, live).numpy(), model.logits(xt, cand).numpy()
    evidence = _gate_evidence(ref, dg, X, z_live, z_cand, threshold, costs)
    decision = _decide(evidence, cfg)
    state = {k: v.detach().clone() for k, v in cand.state_dict().items()}
    decision = replace(decision, reason=f"{dg.action}: {dg.reason}; {decision.reason}")
    return _result(model, decision, evidence.as_metrics(), details, t0, state)


def _result(
    model: SelfHealingModel,
    decision: Decision,
    metrics: dict[str, float],
    diagnosis: dict[str, Any],
    t0: float,
    state: dict[str, torch.Tensor] | None = None,
) -> HealResult:
    adapter = state if state is not None else model.adapter_state()
    ms = (time.perf_counter() - t0) * 1e3
    return HealResult(
        adapter,
        decision.accepted,
        decision.reason,
        {},
        metrics,
        ms,
        diagnosis=diagnosis,
        verdict=decision.verdict,
    )


def _same(live: ReflexiveLayer, cand: ReflexiveLayer, ref: LabelFreeReference, cfg: LabelFreeConfig) -> bool:
    """True when the live adapter already is this candidate, up to estimation noise."""
    a, b = live.state_dict(), cand.state_dict()
    if not all(torch.equal(a[k], b[k]) for k in a if k not in CALIBRATION_KEYS):
        return False
    std = torch.as_tensor(ref.std, dtype=torch.float32)
    d_scale = float((a["input_scale"] / b["input_scale"] - 1).abs().max())
    d_shift = float(((a["input_shift"] - b["input_shift"]).abs() / std).max())
    d_offset = abs(float(a["logit_offset"] - b["logit_offset"]))
    return d_scale < cfg.same_scale and d_shift < cfg.same_shift and d_offset < cfg.same_offset


def estimated_cost(p: np.ndarray, flags: np.ndarray, costs: CostMatrix) -> float:
    """CBPE: the mean expected cost per row of decisions ``flags`` if ``p`` are the true
    fraud probabilities.

    >>> round(estimated_cost(np.array([0.9, 0.05]), np.array([True, False]), CostMatrix()), 3)
    0.3
    """
    p = np.asarray(p, np.float64)
    per_row = np.where(flags, (1 - p) * costs.fp, p * costs.fn)
    return float(per_row.mean()) if len(per_row) else 0.0


@dataclass(frozen=True)
class LabelFreeEvidence:
    """What the label-free gate judges a candidate on (no label: beliefs and rates)."""

    estimated_cost_before: float  # CBPE of the live adapter's decisions, under the diagnosis's belief
    estimated_cost_after: float  # ... and of the candidate's
    pos_rate_before: float  # share of the rows the live adapter flags
    pos_rate_after: float  # ... and the candidate
    pos_rate_expected: float  # what the diagnosis predicts the candidate flags
    pos_rate_reference: float  # what the model flagged on the validation rows
    fraud_rate_estimate: float  # the diagnosis's fraud rate (the median of its three estimates)
    fraud_rate_reference: float  # ... and the training's
    n_rows: int
    rule_flagged: tuple[float, float] | None = None  # (candidate, reference) share of rule-fired rows flagged

    def as_metrics(self) -> dict[str, float]:
        """The flat record the registry, events and reports keep."""
        m = {k: float(v) for k, v in asdict(self).items() if k != "rule_flagged"}
        if self.rule_flagged is not None:
            m["rule_flagged_after"], m["rule_flagged_reference"] = self.rule_flagged
        return m


def _gate_evidence(
    ref: LabelFreeReference,
    dg: Diagnosis,
    X: np.ndarray,
    z_live: np.ndarray,
    z_cand: np.ndarray,
    threshold: float,
    costs: CostMatrix,
) -> LabelFreeEvidence:
    t = float(np.log(threshold / (1 - threshold)))
    f_live, f_cand = z_live >= t, z_cand >= t
    sc = ref.scores
    belief = ref.calibrated(z_cand - dg.offset, dg.log_odds)  # what the diagnosis believes of today's rows
    fired = ref.rules.fires((np.asarray(X, np.float64) - dg.shift) / dg.scale).any(axis=1)
    rule_flagged = None
    if sc.rule_flagged is not None and fired.sum() >= 20:
        rule_flagged = (float(f_cand[fired].mean()), float(sc.rule_flagged))
    return LabelFreeEvidence(
        estimated_cost_before=estimated_cost(belief, f_live, costs),
        estimated_cost_after=estimated_cost(belief, f_cand, costs),
        pos_rate_before=float(f_live.mean()),
        pos_rate_after=float(f_cand.mean()),
        pos_rate_expected=_expected_rate(ref, dg),
        pos_rate_reference=sc.flag_rate,
        fraud_rate_estimate=dg.prior,
        fraud_rate_reference=ref.prior0,
        n_rows=len(X),
        rule_flagged=rule_flagged,
    )


def _expected_rate(ref: LabelFreeReference, dg: Diagnosis) -> float:
    """What the candidate should flag if its diagnosis is right: its own operating point on
    the validation rows (the offset moves the decision, and with it TPR and FPR) at the
    diagnosed fraud rate."""
    tpr, fpr = ref.rates_at(dg.offset)
    return (1 - dg.prior) * fpr + dg.prior * tpr


def _decide(ev: LabelFreeEvidence, cfg: LabelFreeConfig) -> Decision:
    if not cfg.gate:
        return Decision(Verdict.UNGATED, "accepted without gate")
    e_b, e_a = ev.estimated_cost_before, ev.estimated_cost_after
    r_b, r_a, r_e = ev.pos_rate_before, ev.pos_rate_after, ev.pos_rate_expected
    if e_a > e_b:
        return Decision(
            Verdict.ESTIMATED_COST_RISES, f"refused: estimated cost would rise {e_b:.4f} -> {e_a:.4f}"
        )
    if not r_e / cfg.rate_ratio <= r_a <= r_e * cfg.rate_ratio:
        return Decision(
            Verdict.OFF_DIAGNOSIS, f"refused: it would flag {r_a:.3f}, its diagnosis predicts {r_e:.3f}"
        )
    k, r_ref = cfg.max_rate_change, ev.pos_rate_reference
    lo, hi = min(r_b, r_ref), max(r_b, r_ref)  # back towards the validation rows' rate is allowed
    moved = ev.fraud_rate_estimate / ev.fraud_rate_reference  # a fraud rate that moved moves the flags
    if moved == moved:  # (nan: no fraud-rate estimate)
        lo, hi = lo * min(moved, 1.0), hi * max(moved, 1.0)
    if not lo / k <= r_a <= hi * k:
        why = f"refused: the flag rate may not move from {r_b:.3f} to {r_a:.3f} without labels"
        return Decision(Verdict.RATE_MOVED, why)
    if ev.rule_flagged is not None and ev.rule_flagged[0] < ev.rule_flagged[1] - cfg.rule_slack:
        got, want = ev.rule_flagged
        why = f"refused: it flags {got:.2f} of the rows the rules flag (reference {want:.2f})"
        return Decision(Verdict.RULES_UNFLAGGED, why)
    why = f"estimated cost {e_b:.4f} -> {e_a:.4f}, flag rate {r_b:.3f} -> {r_a:.3f} (expected {r_e:.3f})"
    return Decision(Verdict.ACCEPTED, why)
