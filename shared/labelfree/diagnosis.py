"""What moved, from unlabeled rows alone, and whether it can be undone without labels.

Two changes can be undone without a label: a **unit change** upstream (a feature rescaled
and offset for every row: an affine map per feature) and a **fraud-rate change** (the
classes' distributions unchanged, their shares moved). ``diagnose`` looks for the one
explanation of both kinds that fits the newest rows:

1. the fraud rate whose training marginal fits the most features' quartiles (a
   robust fit: a feature that moved for another reason counts once, however far it moved;
   ties go to the training rate);
2. at that rate, the features whose quartiles still sit more than ``z_shift`` standard
   errors (and ``min_effect``) away are *shifted*: the affine map that puts seven of
   their quantiles back (least squares weighted by each quantile's precision) is the
   calibration;
3. the explanation must fit every feature's **shape**: after the map, each of nine
   quantiles of every feature must sit within ``z_shape`` standard errors of the training
   marginal. An affine map cannot make or remove a bump, a skew or a tail, so a new fraud
   pattern or a change in one class only shows here; then nothing is healed;
4. the fraud rate is estimated again from the calibrated model's scores (EM) and from its
   flag rate (BBSE); every two of the three estimates must agree within
   ``prior_agreement`` log-odds, or ``prior_noise_z`` standard errors of their difference
   (each estimate's own: the features' fit is nearly flat in the fraud rate where fraud is
   rare, and a flag rate's noise grows through BBSE's division), or the estimates are
   unstable and nothing is healed. The rate the offset moves to is their median (in
   log-odds): each of the three fails in its own way (EM where the calibration, fitted on
   a few dozen validation frauds, is off; BBSE where the model barely separates the
   classes; the features' fit where fraud is rare), and the median follows the two that
   did not. Where the calibration finds known rates (EM's check) the decision moves by the
   log-odds change over its slope. Elsewhere the calibration is right on average only, and
   the decision moves to where the validation rows, reweighted to the estimate nearest the
   training rate, cost least (:meth:`LabelFreeReference.prior_offset`): a decision moved
   too far costs more than one moved too little.

The result names an action (``recalibrate``, ``prior``, ``both``, ``nothing``,
``unexplained``, ``unstable``), the calibration and logit offset that perform it, and the
reasoning in words. Limits: only the marginals are compared, one feature at a time (a
change in how features combine with the same marginals is invisible), and the stream is
taken as independent rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.labelfree.prior import bbse_prior, em_prior, logit
from shared.labelfree.reference import LabelFreeReference

HEALS = ("recalibrate", "prior", "both")


@dataclass(frozen=True)
class DiagnosisConfig:
    min_rows: int = 500  # fewer rows than this: no diagnosis
    z_shift: float = 4.0  # a feature's quartiles this many standard errors off (together): shifted
    min_effect: float = 0.1  # ... and off by at least this share of a training sd (or IQR)
    z_shape: float = 5.0  # after the map, a quantile this many standard errors off: unexplained
    levels: tuple[float, ...] = (0.02, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98)  # shape quantiles
    min_prior_change: float = 0.5  # log-odds the fraud rate must move before the offset moves
    prior_agreement: float = 0.5  # log-odds within which the three fraud-rate estimates must agree
    prior_penalty: float = 1.0  # per squared log-odds away from the training rate, in the fit
    em_max_miss: float = 1.0  # EM is asked only where it lands this close (log-odds) to known
    # fraud rates on validation rows it was not calibrated on (ScoreReference.em_error)
    prior_noise_z: float = 3.0  # the two margins above widen to this many standard errors of an
    # estimated log-odds on the rows (rare fraud: 2,000 rows at 0.5% hold ten frauds)


@dataclass(frozen=True)
class Shift:
    feature: str
    scale: float  # today's value = scale * training value + shift
    shift: float
    z: float  # how far its quartiles were, in standard errors


@dataclass(frozen=True)
class Diagnosis:
    action: str  # recalibrate | prior | both | nothing | unexplained | unstable
    reason: str
    rows: int
    prior0: float  # the training fraud rate
    prior: float = float("nan")  # the fraud rate acted on: the median of the three below
    prior_features: float = float("nan")  # the fraud rate the features' marginals fit
    prior_em: float = float("nan")  # ... the calibrated scores imply (EM)
    prior_bbse: float | None = None  # ... the flag rate implies (BBSE)
    flag_rate: float = float("nan")  # the bundle's model on the rows, calibrated
    flag_rate_raw: float = float("nan")  # ... on the rows as they arrive (how the scores moved)
    flag_rate_reference: float = float("nan")  # ... on the validation rows
    shifted: tuple[Shift, ...] = ()
    unexplained: tuple[tuple[str, float], ...] = ()  # (feature, shape z)
    scale: np.ndarray = field(default_factory=lambda: np.ones(0))  # (d,) the calibration
    shift: np.ndarray = field(default_factory=lambda: np.zeros(0))
    offset: float = 0.0  # on the model's logit: where the decision costs least at ``prior``
    log_odds: float = 0.0  # the fraud odds' move believed (0: the training rate holds)
    decision_rate: float = float("nan")  # the rate the offset decides for: the estimate nearest training

    @property
    def heals(self) -> bool:
        return self.action in HEALS

    def details(self) -> dict[str, Any]:
        """JSON-ready: what goes on ``drift-alerts`` and into the registry."""
        d: dict[str, Any] = {"action": self.action, "reason": self.reason, "rows": self.rows}
        d["fraud_rate"] = {
            "training": round(self.prior0, 4),
            "estimate": _r(self.prior),
            "features": _r(self.prior_features),
            "em": _r(self.prior_em),
            "bbse": _r(self.prior_bbse),
            "decision": _r(self.decision_rate),
        }
        d["flag_rate"] = _r(self.flag_rate)
        d["flag_rate_raw"] = _r(self.flag_rate_raw)
        d["flag_rate_reference"] = _r(self.flag_rate_reference)
        d["shifted"] = {
            s.feature: {"scale": _r(s.scale), "shift": _r(s.shift), "z": _r(s.z)} for s in self.shifted
        }
        d["unexplained"] = {f: _r(z) for f, z in self.unexplained}
        d["offset"] = _r(self.offset)
        return d


def _r(x: float | None) -> float | None:
    return None if x is None or x != x else round(float(x), 4)


def diagnose(ref: LabelFreeReference, X: np.ndarray, cfg: DiagnosisConfig | None = None) -> Diagnosis:
    """The diagnosis of the rows ``X`` (n, d), newest of the drift, against the training reference."""
    cfg = cfg or DiagnosisConfig()
    X = np.asarray(X, np.float64)
    n, p0 = len(X), ref.prior0
    if n < cfg.min_rows:
        return Diagnosis("nothing", f"{n} rows, fewer than {cfg.min_rows}: too few to diagnose", n, p0)
    R = np.quantile(X, QUARTILES, axis=0).T  # (d, 3): the rows' quartiles
    pi_f, se_f = _fit_prior(ref, R, X, cfg)
    z, scale, shift = _shifts(ref, X, R, pi_f, cfg)
    moved = np.flatnonzero((scale != 1) | (shift != 0))
    shifted = tuple(Shift(ref.features[j], float(scale[j]), float(shift[j]), float(z[j])) for j in moved)
    Xc = (X - shift) / scale
    shape = _shape_z(ref, Xc, pi_f, cfg)
    base = dict(rows=n, prior0=p0, prior_features=pi_f, shifted=shifted, scale=scale, shift=shift)
    bad = tuple((ref.features[j], float(shape[j])) for j in np.flatnonzero(shape > cfg.z_shape))
    if bad:
        names = ", ".join(f"{f} (z={v:.1f})" for f, v in bad)
        why = (
            f"{names}: the shape moved, which neither a unit change nor a fraud-rate change does "
            "(a new pattern, or a change in one class): nothing can be undone without labels"
        )
        return Diagnosis("unexplained", why, unexplained=bad, **base)  # type: ignore[arg-type]
    base |= dict(flag_rate_raw=float((ref.logits(X) >= ref.threshold_logit).mean()))
    base |= dict(flag_rate_reference=ref.scores.flag_rate)
    return _with_prior(ref, Xc, cfg, base, se_f)


def _with_prior(
    ref: LabelFreeReference, Xc: np.ndarray, cfg: DiagnosisConfig, base: dict[str, Any], se_f: float
) -> Diagnosis:
    """Steps 4 and the action: the fraud rate from the calibrated scores, cross-checked."""
    sc, p0, pi_f = ref.scores, ref.prior0, base["prior_features"]
    z = ref.logits(Xc)
    pi_em = em_prior(1 / (1 + np.exp(-(sc.slope * z + sc.bias))), p0)
    flag_rate = float((z >= ref.threshold_logit).mean())
    pi_bbse = bbse_prior(flag_rate, sc.tpr, sc.fpr)
    base |= dict(prior_em=pi_em, prior_bbse=pi_bbse, flag_rate=flag_rate)
    n = len(Xc)
    se = 1 / np.sqrt(n * p0 * (1 - p0))  # of the EM estimate's log-odds, at the training rate
    estimates = [(logit(pi_f), se_f)]
    use_em = abs(sc.em_error) <= cfg.em_max_miss  # EM finds known rates on validation rows
    if use_em:
        estimates.append((logit(pi_em), se))
    if pi_bbse is not None:  # a flag rate's binomial noise through the division, at EM's rate
        # (the features' where EM is not asked)
        at = min(max(pi_em if use_em else pi_f, 1 / n), 1 - 1 / n)
        se_b = np.sqrt(flag_rate * (1 - flag_rate) / n) / (sc.tpr - sc.fpr) / (at * (1 - at))
        estimates.append((logit(min(max(pi_bbse, 0.5 / n), 1 - 0.5 / n)), float(se_b)))
    em = f"{pi_em:.3f}" + ("" if use_em else f" (not asked: {sc.em_error:+.1f} log-odds off on known rates)")
    rates = f"features {pi_f:.3f}, EM {em}, BBSE " + ("n/a" if pi_bbse is None else f"{pi_bbse:.3f}")
    if not _agree(estimates, cfg):
        why = f"the fraud-rate estimates disagree ({rates}; training {p0:.3f}): nothing is changed"
        return Diagnosis("unstable", why, **base)
    pi = float(1 / (1 + np.exp(-np.median([e for e, _ in estimates]))))
    base |= dict(prior=pi)
    delta = logit(pi) - logit(p0)
    prior = len(estimates) > 1 and abs(delta) >= max(cfg.min_prior_change, cfg.prior_noise_z * se)
    # where the calibration finds known rates (EM's check) the offset follows it; elsewhere
    # it is read from the validation rows' own scores, for the estimate nearest the training
    # rate: at rare fraud the cost climbs far faster past the right threshold than short of
    # it (a model trained at 0.8% fraud, moved for 5% where it was 3%, cost more than before)
    near = pi
    if not use_em:
        near = float(1 / (1 + np.exp(-min((e for e, _ in estimates), key=lambda e: abs(e - logit(p0))))))
    move = delta / sc.slope if use_em else ref.prior_offset(near)
    offset = move if prior else 0.0
    recal = len(base["shifted"]) > 0
    action = {(True, True): "both", (True, False): "recalibrate", (False, True): "prior"}.get(
        (recal, prior), "nothing"
    )
    parts = []
    if recal:
        parts.append(
            "unit change on "
            + ", ".join(f"{s.feature} (x{s.scale:.2f} {s.shift:+.2f})" for s in base["shifted"])
        )
    parts.append(f"fraud rate {pi:.3f} against {p0:.3f} in training ({rates})")
    if not prior:
        parts[-1] += ": unchanged within the margin"
    elif near != pi:
        parts[-1] += f"; the decision moves as for {near:.3f}, the estimate nearest the training rate"
    parts.append(
        f"the frozen model flags {base['flag_rate_raw']:.3f} of the rows ({flag_rate:.3f} calibrated; "
        f"{base['flag_rate_reference']:.3f} on validation rows)"
    )
    base |= dict(offset=offset, log_odds=delta if prior else 0.0, decision_rate=near if prior else p0)
    return Diagnosis(action, "; ".join(parts), **base)


def _agree(estimates: list[tuple[float, float]], cfg: DiagnosisConfig) -> bool:
    """Every two (log-odds, standard error) estimates within ``prior_agreement`` log-odds,
    or ``prior_noise_z`` standard errors of their difference."""
    return all(
        abs(la - lb) <= max(cfg.prior_agreement, cfg.prior_noise_z * float(np.hypot(sa, sb)))
        for k, (la, sa) in enumerate(estimates)
        for lb, sb in estimates[k + 1 :]
    )


QUARTILES = np.array([0.25, 0.5, 0.75])
FIT_LEVELS = np.array([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])  # where a shifted feature's map is fitted


def _fit_prior(
    ref: LabelFreeReference, R: np.ndarray, X: np.ndarray, cfg: DiagnosisConfig
) -> tuple[float, float]:
    """The fraud rate whose training marginal fits the most features' quartiles ``R`` of the
    rows ``X`` (a 0/1 input: its share), and its standard error in log-odds: the half-width
    of the rates whose fit is within 1 of the best (the fit is a sum of squared z's). Where
    fraud is rare the marginals hardly depend on its rate, and that width says so."""
    n, at, classes = len(X), _rows_cdf(X, R), ref.class_cdfs_at(R)
    l0 = logit(ref.prior0)
    cap = 3 * cfg.z_shift**2
    grid = l0 + np.arange(-4.0, 4.0001, 0.05)
    scores = np.empty(len(grid))
    for k, lg in enumerate(grid):
        pi = float(1 / (1 + np.exp(-lg)))
        z = _z_levels(ref, R, at, pi, n, classes)
        z2 = np.where(ref.numeric, (z**2).sum(axis=1), ref.rate_z(X, pi) ** 2)
        scores[k] = float(np.minimum(z2, cap).sum()) + cfg.prior_penalty * (lg - l0) ** 2
    best = int(np.argmin(scores))
    near = grid[scores <= scores[best] + 1.0]
    se = max(float(near.max() - near.min()) / 2, 0.05)
    return float(1 / (1 + np.exp(-grid[best]))), se


def _z_levels(
    ref: LabelFreeReference,
    Q: np.ndarray,
    at: np.ndarray,
    pi: float,
    n: int,
    classes: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """(d, L): how far the training marginal at fraud rate ``pi`` sits from the rows' own CDF
    ``at`` (:func:`_rows_cdf`) at the rows' quantiles ``Q``, in standard errors of
    probability (no assumption on the shape). Both CDFs are taken at the same points, so a
    value many rows share (an integer feature, an imputed median) jumps in both alike."""
    F, var_ref = ref.cdf_at(pi, Q, classes)
    z: np.ndarray = (F - at) / np.sqrt(np.maximum(at * (1 - at), 1 / n) / n + var_ref)
    return z


def _rows_cdf(X: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """(d, L): the share of the rows ``X`` at or below each of their quantiles ``Q`` (d, L)."""
    s = np.sort(X, axis=0)
    return np.stack([np.searchsorted(s[:, j], Q[j], side="right") / len(X) for j in range(len(Q))])


def _shifts(
    ref: LabelFreeReference, X: np.ndarray, R: np.ndarray, pi: float, cfg: DiagnosisConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(z, scale, shift) per feature: the affine map that puts the quantiles of the
    significantly shifted ones back (identity for the rest); ``R``: the rows' quartiles."""
    Q = ref.quantiles(pi, QUARTILES)
    z = np.sqrt((_z_levels(ref, R, _rows_cdf(X, R), pi, len(X)) ** 2).sum(axis=1))
    iqr_r, iqr_q = R[:, 2] - R[:, 0], np.maximum(Q[:, 2] - Q[:, 0], 1e-9)
    s = iqr_q / 1.349
    effect = np.maximum(np.abs(R[:, 1] - Q[:, 1]) / s, np.abs(np.log(np.maximum(iqr_r, 1e-9) / iqr_q)))
    moved = (z > cfg.z_shift) & (effect > cfg.min_effect) & (iqr_r > 0) & ref.numeric
    a, b = _affine_fit(ref, np.quantile(X, FIT_LEVELS, axis=0).T, pi)
    scale = np.where(moved & (a > 0), a, 1.0)
    shift = np.where(moved & (a > 0), b, 0.0)
    return z, scale, shift


def _affine_fit(ref: LabelFreeReference, R: np.ndarray, pi: float) -> tuple[np.ndarray, np.ndarray]:
    """Per feature, ``R ~ a * Q + b`` over the levels of ``FIT_LEVELS`` (d, L), each level
    weighted by the precision of its quantile (density squared over ``q(1 - q)``), so that
    a skewed feature's sparse tail does not pull the map."""
    Q = ref.quantiles(pi, FIT_LEVELS)
    width = ref.quantiles(pi, FIT_LEVELS + 0.01) - ref.quantiles(pi, FIT_LEVELS - 0.01)
    w = (0.02 / np.maximum(width, 1e-12)) ** 2 / (FIT_LEVELS * (1 - FIT_LEVELS))
    w = w / w.sum(axis=1, keepdims=True)
    qm, rm = (w * Q).sum(axis=1, keepdims=True), (w * R).sum(axis=1, keepdims=True)
    a = (w * (Q - qm) * (R - rm)).sum(axis=1) / np.maximum((w * (Q - qm) ** 2).sum(axis=1), 1e-12)
    return a, rm[:, 0] - a * qm[:, 0]


def _shape_z(ref: LabelFreeReference, Xc: np.ndarray, pi: float, cfg: DiagnosisConfig) -> np.ndarray:
    """Per feature, the largest distance (in standard errors) between a quantile level and
    the training CDF at the rows' quantile of that level."""
    lv = np.asarray(cfg.levels)
    Qc = np.quantile(Xc, lv, axis=0).T  # (d, L)
    out: np.ndarray = np.abs(_z_levels(ref, Qc, _rows_cdf(Xc, Qc), pi, len(Xc))).max(axis=1)
    return np.where(ref.numeric, out, ref.rate_z(Xc, pi))  # a 0/1 input: its share
