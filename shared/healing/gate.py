"""The gate: what a heal cycle's candidate is judged on (:class:`GateEvidence`) and the
verdict (:func:`decide`).

The evidence is typed: held-out labels (:class:`HeldOut`), the comparison with the
never-healed shadow (:class:`VersusShadow`) and the rules' agreement (:class:`RuleAgreement`)
are each present or absent as a whole, so the gate branches on what was measured, not on
which keys a dictionary happens to hold. :meth:`GateEvidence.as_metrics` flattens it for
the registry, events and reports (the keys they have always carried).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import StrEnum
from statistics import NormalDist
from typing import Any

from shared.healing.types import HealConfig
from shared.model import AdapterState


class Verdict(StrEnum):
    """Why a candidate was accepted or refused (its value is what events and reports carry)."""

    ACCEPTED = "accepted"  # the gate's checks passed
    UNGATED = "ungated"  # accepted without a gate (ablation)
    NO_EVIDENCE = "no_evidence"  # no arrived label and no rule fired
    NON_FINITE = "non_finite"  # the loss or a weight stopped being finite
    COLLAPSE_NO_FRAUD = "collapse_no_fraud"  # flags no fraud while the evidence shows fraud
    COLLAPSE_ALL_FRAUD = "collapse_all_fraud"  # flags everything while the evidence shows normals
    COSTS_MORE_THAN_SHADOW = "costs_more_than_shadow"  # on the held-out labels
    NO_GAIN_OVER_SHADOW = "no_gain_over_shadow"  # cheaper, but not by the bar's standard errors
    NO_GAIN = "no_gain"  # no better than the current adapter on the held-out labels
    RATE_MOVED = "rate_moved"  # without labels, the flag rate moved too far
    NO_RULE_GAIN = "no_rule_gain"  # without labels, rule agreement did not improve
    NOTHING_TO_JUDGE = "nothing_to_judge"  # neither held-out labels nor rule-fired rows
    SUPERSEDED = "superseded"  # accepted, but the adapter it started from was replaced meanwhile
    # the label-free gate's (shared.labelfree.cycle)
    NO_HEAL_DIAGNOSED = "no_heal_diagnosed"  # the diagnosis found nothing a calibration heals
    ALREADY_LIVE = "already_live"  # the live adapter already is this candidate
    ESTIMATED_COST_RISES = "estimated_cost_rises"  # CBPE: it would cost more under the diagnosis
    OFF_DIAGNOSIS = "off_diagnosis"  # it would flag far from what its own diagnosis predicts
    RULES_UNFLAGGED = "rules_unflagged"  # it flags too few of the rows the trusted rules flag

    @property
    def accepted(self) -> bool:
        return self in (Verdict.ACCEPTED, Verdict.UNGATED)


@dataclass(frozen=True)
class HeldOut:
    """The current adapter (``before``) and the candidate (``after``) on the held-out labels."""

    cost_before: float
    cost_after: float
    logloss_before: float
    logloss_after: float
    f1_before: float
    f1_after: float
    accuracy_before: float
    accuracy_after: float
    logloss_gain_z: float  # paired z of the per-row log-loss gain
    cost_gain_z: float  # ... and of the per-row cost gain


@dataclass(frozen=True)
class VersusShadow:
    """The candidate against the shadow (the never-healed adapter) on the same labelled rows:
    the held-out ones and, judged out of fold, every labelled training row."""

    rows: int
    cost_candidate: float
    cost_shadow: float
    logloss_shadow: float
    gain_z: float  # paired z of the per-row cost gain over the shadow


@dataclass(frozen=True)
class RuleAgreement:
    """Weighted agreement with the rules' weak labels on the training rows a rule fired on."""

    before: float
    after: float


@dataclass(frozen=True)
class GateEvidence:
    pos_rate_before: float  # share of the rows the current adapter flags
    pos_rate_after: float  # ... and the candidate
    evidence_fraud_rate: float  # the arrived labels' fraud rate (the rules' without them; NaN: none)
    n_rows: int
    n_labelled: int
    n_holdout: int  # labelled rows held out of training
    n_rule: int  # training rows a rule fired on
    held_out: HeldOut | None = None  # None: too few arrived labels to hold some out
    shadow: VersusShadow | None = None  # None: no shadow, or nothing held out
    rules: RuleAgreement | None = None  # None: no rule fired on a training row
    # the live adapter itself against the shadow on the rows of ``shadow``: whether what is live
    # now loses to never healing (None: no shadow, or nothing held out)
    live: VersusShadow | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GateEvidence:
        parts = {"held_out": HeldOut, "shadow": VersusShadow, "rules": RuleAgreement, "live": VersusShadow}
        return cls(**{k: (parts[k](**v) if k in parts and v is not None else v) for k, v in d.items()})

    def as_metrics(self) -> dict[str, float]:
        """The flat record the registry, events and reports keep."""
        m: dict[str, float] = {
            "pos_rate_before": self.pos_rate_before,
            "pos_rate_after": self.pos_rate_after,
            "evidence_fraud_rate": self.evidence_fraud_rate,
        }
        if (h := self.held_out) is not None:
            for tag in ("before", "after"):
                m[f"holdout_cost_{tag}"] = getattr(h, f"cost_{tag}")
                m[f"holdout_f1_{tag}"] = getattr(h, f"f1_{tag}")
                m[f"holdout_accuracy_{tag}"] = getattr(h, f"accuracy_{tag}")
                m[f"holdout_logloss_{tag}"] = getattr(h, f"logloss_{tag}")
            m["holdout_logloss_gain_z"] = h.logloss_gain_z
            m["holdout_cost_gain_z"] = h.cost_gain_z
        if (r := self.rules) is not None:
            m["rule_agreement_before"], m["rule_agreement_after"] = r.before, r.after
        if (s := self.shadow) is not None:
            m["shadow_evidence_rows"] = s.rows
            m["shadow_evidence_cost_after"] = s.cost_candidate
            m["holdout_cost_shadow"] = s.cost_shadow
            m["holdout_logloss_shadow"] = s.logloss_shadow
            m["holdout_cost_gain_z_shadow"] = s.gain_z
        if (v := self.live) is not None:
            m["holdout_cost_live_gain_z_shadow"] = v.gain_z
        m.update(n_rows=self.n_rows, n_labelled=self.n_labelled, n_holdout=self.n_holdout, n_rule=self.n_rule)
        return m


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str  # the verdict with its numbers, for people

    @property
    def accepted(self) -> bool:
        return self.verdict.accepted


def shadow_bar(cfg: HealConfig, n_labelled: int) -> float:
    """The z a candidate's gain over the shadow must reach: ``min_shadow_gain_z``, or with
    ``look_labels`` the bar that keeps the chance of a false pass over all the looks so far
    (one per ``look_labels`` arrived labels) at what one look at ``min_shadow_gain_z`` had
    (Bonferroni).

    >>> cfg = HealConfig(min_shadow_gain_z=1.0, look_labels=100)
    >>> [round(shadow_bar(cfg, n), 2) for n in (100, 300, 1000, 2000)]
    [1.0, 1.62, 2.15, 2.41]
    """
    if not cfg.look_labels:
        return cfg.min_shadow_gain_z
    looks = max(1, n_labelled // cfg.look_labels)
    alpha = 1 - NormalDist().cdf(cfg.min_shadow_gain_z)
    return NormalDist().inv_cdf(1 - alpha / looks)


def finite(state: AdapterState) -> bool:
    return all(bool(t.isfinite().all()) for t in state.values())


def decide(candidate: AdapterState, ev: GateEvidence, cfg: HealConfig) -> Decision:
    """The verdict on ``candidate``: finite, not collapsed, then judged on held-out labels
    when there are some, else on the rules."""
    if not finite(candidate):
        return Decision(Verdict.NON_FINITE, "candidate has non-finite weights")
    if cfg.guard_collapse and (collapse := _collapse(ev, cfg)) is not None:
        return collapse
    if not cfg.gate:
        return Decision(Verdict.UNGATED, "accepted without gate")
    if ev.held_out is not None:
        return _on_labels(ev.held_out, ev.shadow, ev.n_labelled, cfg)
    if ev.rules is not None:
        return _on_rules(ev.rules, ev.pos_rate_before, ev.pos_rate_after, cfg)
    return Decision(Verdict.NOTHING_TO_JUDGE, "nothing to judge the candidate on")


def _collapse(ev: GateEvidence, cfg: HealConfig) -> Decision | None:
    """Why the candidate collapsed to one class against the evidence, if it did."""
    rate = ev.evidence_fraud_rate
    if math.isnan(rate):  # no evidence of the fraud rate
        return None
    # rare fraud: a model may rightly flag a share as small as the fraud itself
    floor = min(cfg.collapse_rate, cfg.collapse_share * rate)
    if ev.pos_rate_after < floor and cfg.collapse_rate <= rate:
        why = "collapse: the candidate flags no fraud while the evidence shows fraud"
        return Decision(Verdict.COLLAPSE_NO_FRAUD, why)
    if 1 - ev.pos_rate_after < cfg.collapse_rate <= 1 - rate:
        why = "collapse: the candidate flags everything while the evidence shows normals"
        return Decision(Verdict.COLLAPSE_ALL_FRAUD, why)
    return None


def _on_labels(h: HeldOut, s: VersusShadow | None, n_labelled: int, cfg: HealConfig) -> Decision:
    """The verdict on held-out labels: against the shadow first, then against the current."""
    change = (
        f"cost {h.cost_before:.4f} -> {h.cost_after:.4f}, "
        f"log loss {h.logloss_before:.4f} -> {h.logloss_after:.4f} (z={h.logloss_gain_z:.2f})"
    )
    if s is not None:
        if s.cost_candidate > s.cost_shadow:
            why = (
                f"costs more than the shadow on held-out labels: {s.cost_candidate:.4f} > {s.cost_shadow:.4f}"
            )
            return Decision(Verdict.COSTS_MORE_THAN_SHADOW, f"{why} ({change})")
        if s.gain_z < shadow_bar(cfg, n_labelled):
            over = f"{s.cost_shadow:.4f} -> {s.cost_candidate:.4f} over {s.rows} rows"
            why = f"no clear gain over the shadow on held-out labels: {over} (z={s.gain_z:.2f}; {change})"
            return Decision(Verdict.NO_GAIN_OVER_SHADOW, why)
    better = h.cost_after <= h.cost_before and h.logloss_after < h.logloss_before
    if better and h.logloss_gain_z >= cfg.min_gain_z:
        return Decision(Verdict.ACCEPTED, f"held-out {change}")
    return Decision(Verdict.NO_GAIN, f"no clear gain on held-out labels: {change}")


def _on_rules(r: RuleAgreement, rate_before: float, rate_after: float, cfg: HealConfig) -> Decision:
    """The verdict with no held-out label: rule agreement, the flag rate kept in bounds."""
    ratio = cfg.label_free_rate_ratio

    def within(before: float, after: float) -> bool:
        return before / ratio <= after <= before * ratio

    if not (within(rate_before, rate_after) and within(1 - rate_before, 1 - rate_after)):
        # rules alone are one-sided evidence (mostly "fraud" rules): without labels, do not
        # let a candidate move the alert volume far; that is how label-free healing collapses
        why = f"without labels the flag rate may not move from {rate_before:.3f} to {rate_after:.3f}"
        return Decision(Verdict.RATE_MOVED, why)
    if r.after > r.before:
        return Decision(
            Verdict.ACCEPTED, f"rule agreement {r.before:.3f} -> {r.after:.3f} (no held-out labels yet)"
        )
    return Decision(Verdict.NO_RULE_GAIN, f"rule agreement did not improve: {r.before:.3f} -> {r.after:.3f}")
