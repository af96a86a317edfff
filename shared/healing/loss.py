"""The composite healing loss.

    loss = w_label   * BCE(labelled rows, labels that have arrived)
         + w_rule    * BCE(rows where rules fire, weak labels), weighted by rule confidence
         + w_entropy * mean binary entropy of the predictions (bounded, see below)

Entropy minimisation sharpens predictions but, alone, drives them to one class. Its
weight is therefore capped so the entropy term is never more than ``entropy_max_share``
of the loss; with no labels and no rule firing it is zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LossWeights:
    label: float = 0.70  # BCE on arrived labels
    rule: float = 0.24  # BCE against the rules' weak labels
    entropy: float = 0.03  # entropy minimisation, before the cap
    pos_weight: float = 1.0  # BCE weight on fraud rows; 1 keeps probabilities calibrated
    entropy_max_share: float = 0.5  # the entropy term never exceeds this share of the loss


def binary_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-row entropy (nats) of Bernoulli(sigmoid(logits)), numerically stable."""
    p = torch.sigmoid(logits)
    return F.softplus(logits) - p * logits


def composite_loss(
    logits: torch.Tensor,  # (N,)
    y: torch.Tensor,  # (N,) 0/1, NaN where no label has arrived
    rule_label: torch.Tensor,  # (N,) weak label in [0, 1]
    rule_conf: torch.Tensor,  # (N,) weight of the weak label, 0 where no rule fires
    weights: LossWeights,
    label_weight: torch.Tensor | None = None,  # (N,) per-row weight of the label term (recency)
) -> tuple[torch.Tensor, dict[str, float]]:
    w_label, w_rule, w_entropy = weights.label, weights.rule, weights.entropy
    pos_weight, entropy_max_share = weights.pos_weight, weights.entropy_max_share
    zero = logits.new_zeros(())
    labelled = ~torch.isnan(y)
    if bool(labelled.any()):
        pw = logits.new_tensor(pos_weight)
        per_label = F.binary_cross_entropy_with_logits(
            logits[labelled], y[labelled], pos_weight=pw, reduction="none"
        )
        if label_weight is None:
            l_label = per_label.mean()
        else:
            w = label_weight[labelled]
            l_label = (per_label * w).sum() / w.sum()
    else:
        l_label = zero
    ruled = rule_conf > 0
    if bool(ruled.any()):
        per_row = F.binary_cross_entropy_with_logits(logits[ruled], rule_label[ruled], reduction="none")
        l_rule = (per_row * rule_conf[ruled]).sum() / rule_conf[ruled].sum()
    else:
        l_rule = zero
    entropy = binary_entropy(logits).mean() if logits.numel() else zero
    other = w_label * l_label + w_rule * l_rule
    w_ent = w_entropy
    ent_value, other_value = float(entropy.detach()), float(other.detach())
    if w_ent > 0 and ent_value > 0:
        share = entropy_max_share
        w_cap = share * other_value / ((1.0 - share) * ent_value) if share < 1.0 else w_ent
        w_ent = min(w_ent, w_cap)
    loss = other + w_ent * entropy
    terms = {
        "label": float(l_label.detach()),
        "rule": float(l_rule.detach()),
        "entropy": ent_value,
        "entropy_weight": w_ent,
        "total": float(loss.detach()),
    }
    return loss, terms
