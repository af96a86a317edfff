"""The gate's verdicts on typed evidence: held-out labels, the shadow, the rules, collapse."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from shared.healing.gate import (
    GateEvidence,
    HeldOut,
    RuleAgreement,
    Verdict,
    VersusShadow,
    decide,
)
from shared.healing.types import HealConfig

FINITE = {"w": torch.zeros(2)}


def held_out(cost: tuple[float, float], logloss: tuple[float, float], z: float) -> HeldOut:
    return HeldOut(
        cost_before=cost[0],
        cost_after=cost[1],
        logloss_before=logloss[0],
        logloss_after=logloss[1],
        f1_before=0.5,
        f1_after=0.5,
        accuracy_before=0.9,
        accuracy_after=0.9,
        logloss_gain_z=z,
        cost_gain_z=0.0,
    )


def evidence(**parts: object) -> GateEvidence:
    base = GateEvidence(
        pos_rate_before=0.2,
        pos_rate_after=0.2,
        evidence_fraud_rate=0.15,
        n_rows=1000,
        n_labelled=500,
        n_holdout=150,
        n_rule=100,
    )
    return replace(base, **parts)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "ev, verdict, reason",
    [
        (evidence(held_out=held_out((0.5, 0.4), (0.3, 0.2), 3.0)), Verdict.ACCEPTED, "held-out"),
        (evidence(held_out=held_out((0.4, 0.5), (0.3, 0.2), 3.0)), Verdict.NO_GAIN, "no clear gain"),
        (evidence(held_out=held_out((0.4, 0.4), (0.3, 0.31), -1.0)), Verdict.NO_GAIN, "no clear gain"),
        (evidence(rules=RuleAgreement(0.5, 0.7)), Verdict.ACCEPTED, "rule agreement"),
        (evidence(rules=RuleAgreement(0.7, 0.7)), Verdict.NO_RULE_GAIN, "did not improve"),
        (
            evidence(rules=RuleAgreement(0.5, 0.9), pos_rate_after=0.5),
            Verdict.RATE_MOVED,
            "flag rate may not move",
        ),
        (evidence(), Verdict.NOTHING_TO_JUDGE, "nothing to judge"),
    ],
)
def test_the_gate(ev, verdict, reason):
    d = decide(FINITE, ev, HealConfig())
    assert d.verdict is verdict and reason in d.reason
    assert d.accepted is (verdict is Verdict.ACCEPTED)


def test_held_out_labels_outrank_the_rules():
    ev = evidence(held_out=held_out((0.4, 0.5), (0.3, 0.2), 3.0), rules=RuleAgreement(0.5, 0.9))
    assert decide(FINITE, ev, HealConfig()).verdict is Verdict.NO_GAIN


def test_non_finite_candidates_are_refused():
    d = decide({"w": torch.tensor([float("nan")])}, evidence(), HealConfig(gate=False))
    assert d.verdict is Verdict.NON_FINITE and not d.accepted and "non-finite" in d.reason


def test_without_the_gate_a_finite_candidate_is_accepted():
    d = decide(FINITE, evidence(), HealConfig(gate=False))
    assert d.verdict is Verdict.UNGATED and d.accepted


def shadowed(cost_shadow: float, gain_z: float) -> GateEvidence:
    return evidence(
        evidence_fraud_rate=0.2,
        held_out=held_out((0.8, 0.7), (0.5, 0.4), 2.0),
        shadow=VersusShadow(
            rows=150, cost_candidate=0.7, cost_shadow=cost_shadow, logloss_shadow=0.5, gain_z=gain_z
        ),
    )


def test_the_gate_refuses_a_candidate_that_costs_more_than_the_shadow():
    d = decide(FINITE, shadowed(cost_shadow=0.6, gain_z=5.0), HealConfig())
    assert d.verdict is Verdict.COSTS_MORE_THAN_SHADOW and "more than the shadow" in d.reason
    assert decide(FINITE, shadowed(cost_shadow=0.75, gain_z=5.0), HealConfig()).accepted


def test_leaving_the_shadow_needs_a_gain_beyond_noise():
    """The bar is in standard errors: the same gain passes once enough labels back it."""
    cfg = HealConfig(min_shadow_gain_z=1.0, look_labels=None)
    d = decide(FINITE, shadowed(cost_shadow=0.8, gain_z=0.6), cfg)  # 0.1 per row over few labels
    assert d.verdict is Verdict.NO_GAIN_OVER_SHADOW and "no clear gain over the shadow" in d.reason
    assert decide(FINITE, shadowed(cost_shadow=0.8, gain_z=1.7), cfg).accepted  # the same gain, 8x the labels


@pytest.mark.parametrize(
    "fraud, flags, verdict",
    [
        (0.15, 0.001, Verdict.COLLAPSE_NO_FRAUD),
        (0.15, 0.003, Verdict.UNGATED),
        (0.005, 0.001, Verdict.UNGATED),
        (0.005, 0.0002, Verdict.COLLAPSE_NO_FRAUD),
        (0.15, 0.9995, Verdict.COLLAPSE_ALL_FRAUD),
        (float("nan"), 0.0, Verdict.UNGATED),  # no evidence of the fraud rate: no collapse to judge
    ],
)
def test_collapse_is_judged_against_how_rare_the_fraud_is(fraud, flags, verdict):
    """At 0.5% fraud a model may rightly flag 0.1% of the rows; flagging almost none is
    still a collapse."""
    ev = evidence(pos_rate_before=0.01, pos_rate_after=flags, evidence_fraud_rate=fraud)
    d = decide(FINITE, ev, HealConfig(gate=False))
    assert d.verdict is verdict and d.reason.startswith("collapse") is (verdict is not Verdict.UNGATED)


def test_evidence_round_trips_and_flattens_to_the_records_keys():
    ev = shadowed(cost_shadow=0.8, gain_z=1.7)
    assert GateEvidence.from_dict(ev.to_dict()) == ev
    m = ev.as_metrics()
    assert m["holdout_cost_after"] == 0.7 and m["holdout_cost_shadow"] == 0.8
    assert m["shadow_evidence_rows"] == 150 and m["n_holdout"] == 150
    assert "rule_agreement_after" not in evidence().as_metrics()


def test_a_heal_result_crosses_the_process_boundary_with_its_verdict_and_evidence():
    """The service heals in a child process: the verdict and the typed evidence come back."""
    from shared.healing.cycle import HealResult
    from shared.healing.process import decode_result, encode_result

    ev = shadowed(cost_shadow=0.6, gain_z=5.0)
    d = decide(FINITE, ev, HealConfig())
    sent = HealResult(FINITE, d.accepted, d.reason, {}, ev.as_metrics(), 12.0, verdict=d.verdict, evidence=ev)
    got = decode_result(encode_result(sent))
    assert got.verdict is Verdict.COSTS_MORE_THAN_SHADOW and got.evidence == ev
    assert got.reason == sent.reason and got.metrics == sent.metrics
    bare = decode_result(encode_result(HealResult(FINITE, False, "no evidence")))
    assert bare.verdict is None and bare.evidence is None
