"""Drawn problems and drifts: the parameters of one scenario of the family
(:mod:`shared.data.family` turns them into rows).

>>> import numpy as np
>>> p = draw_problem(np.random.default_rng(0))
>>> 8 <= p.d <= 40, 0.005 <= p.fraud_rate <= 0.2, int((p.weights != 0).sum()) in range(3, 11)
(True, True, True)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.errors import ConfigError

KINDS = ("unit", "ramp", "prior", "cluster", "concept", "category", "missing", "revert", "combo", "none")
COMBINABLE = ("unit", "ramp", "prior", "cluster", "concept", "category", "missing")


# --------------------------------------------------------------------------- the problem
@dataclass(frozen=True)
class Problem:
    """A base problem: latent z ~ N(0, AR(1) rho), fraud ~ Bernoulli(sigmoid(f(z, c))),
    each observed column ``loc + scale * z``."""

    rho: float  # correlation of neighbouring features
    fraud_rate: float
    weights: np.ndarray  # (d,) the labelling function's linear weights (0: uninformative)
    pairs: tuple[tuple[int, int, float], ...]  # interactions: w * z_a * z_b
    intercept: float
    loc: np.ndarray  # (d,) observed = loc + scale * z
    scale: np.ndarray  # (d,)
    cat_probs: np.ndarray | None  # the category field's value shares (None: no field)
    cat_effects: np.ndarray | None  # each value's logit effect
    missing: dict[int, float]  # column -> share of its cells missing in training

    @property
    def d(self) -> int:
        return len(self.weights)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f"f{j:02d}" for j in range(self.d))

    def latent(self, rng: np.random.Generator, n: int) -> np.ndarray:
        e = rng.standard_normal((n, self.d))
        z = np.empty_like(e)
        z[:, 0] = e[:, 0]
        c = np.sqrt(1 - self.rho**2)
        for j in range(1, self.d):
            z[:, j] = self.rho * z[:, j - 1] + c * e[:, j]
        return z

    def cats(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.cat_probs is None:
            return np.zeros(n, dtype=int)
        return rng.choice(len(self.cat_probs), n, p=self.cat_probs)

    def logit(
        self, z: np.ndarray, c: np.ndarray, weights: np.ndarray | None = None, intercept: float | None = None
    ) -> np.ndarray:
        w = self.weights if weights is None else weights
        f = (self.intercept if intercept is None else intercept) + z @ w
        for a, b, v in self.pairs:
            f = f + v * z[:, a] * z[:, b]
        if self.cat_effects is not None:
            f = f + self.cat_effects[c]
        return f  # type: ignore[no-any-return]

    def logpdf(self, z: np.ndarray) -> np.ndarray:
        """log N(z; 0, Sigma) under the AR(1) structure (exact, by its Markov factorisation)."""
        s2 = 1 - self.rho**2
        out = -0.5 * (z[:, 0] ** 2 + np.log(2 * np.pi))
        for j in range(1, self.d):
            r = z[:, j] - self.rho * z[:, j - 1]
            out = out - 0.5 * (r**2 / s2 + np.log(2 * np.pi * s2))
        return out  # type: ignore[no-any-return]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -500, 500)))  # type: ignore[no-any-return]


def solve_intercept(problem: Problem, rng: np.random.Generator, rate: float, weights: np.ndarray) -> float:
    """The intercept whose mean fraud probability is ``rate`` (bisection on 40,000 rows)."""
    z, c = problem.latent(rng, 40_000), problem.cats(rng, 40_000)
    base = problem.logit(z, c, weights, 0.0)
    lo, hi = -40.0, 40.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if sigmoid(base + mid).mean() > rate:
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2


def _signal_weights(rng: np.random.Generator, d: int, informative: np.ndarray, rho: float) -> np.ndarray:
    """Weights on ``informative`` features scaled so the linear signal's sd is 1.5-3."""
    w = np.zeros(d)
    w[informative] = rng.choice([-1.0, 1.0], len(informative)) * rng.uniform(0.4, 1.5, len(informative))
    cov = rho ** np.abs(np.subtract.outer(np.arange(d), np.arange(d)))
    sd = float(np.sqrt(w @ cov @ w))
    return w * rng.uniform(1.5, 3.0) / sd


def draw_problem(
    rng: np.random.Generator, need_category: bool = False, need_missing: bool = False
) -> Problem:
    d = int(rng.integers(8, 41))
    rho = float(rng.uniform(0.0, 0.6))
    rate = float(np.exp(rng.uniform(np.log(0.005), np.log(0.20))))
    k = int(rng.integers(3, min(10, d) + 1))
    informative = np.sort(rng.choice(d, k, replace=False))
    weights = _signal_weights(rng, d, informative, rho)
    a, b = rng.choice(informative, 2, replace=False)
    pairs = ((int(a), int(b), float(rng.choice([-1.0, 1.0]) * rng.uniform(0.4, 1.0))),)
    scale = np.exp(rng.uniform(np.log(0.5), np.log(50.0), d))
    loc = scale * rng.uniform(-1.0, 4.0, d)  # many fields positive, as amounts and counts are
    cat_probs = cat_effects = None
    if need_category or rng.random() < 0.35:
        m = int(rng.integers(3, 9))
        cat_probs = rng.dirichlet(np.full(m, 2.0))
        cat_effects = rng.normal(0.0, 0.6, m)
    missing: dict[int, float] = {}
    if need_missing or rng.random() < 0.35:
        for j in rng.choice(d, int(rng.integers(1, 4)), replace=False):
            missing[int(j)] = float(rng.uniform(0.0, 0.05))
    problem = Problem(rho, rate, weights, pairs, 0.0, loc, scale, cat_probs, cat_effects, missing)
    intercept = solve_intercept(problem, rng, rate, weights)
    return Problem(rho, rate, weights, pairs, intercept, loc, scale, cat_probs, cat_effects, missing)


# --------------------------------------------------------------------------- the drift
def _draw_unit(rng: np.random.Generator, p: Problem) -> dict[str, Any]:
    """Scale and/or offset on 1-4 features; each moves its mean by 0.5-3 sd."""
    informative = np.flatnonzero(p.weights)
    n = int(rng.integers(1, 5))
    pool = informative if rng.random() < 0.6 else np.arange(p.d)
    cols = rng.choice(pool, min(n, len(pool)), replace=False)
    out: dict[str, Any] = {"features": [], "scale": [], "offset": [], "shift_sd": []}
    for j in cols:
        shift = float(rng.uniform(0.5, 3.0)) * float(rng.choice([-1.0, 1.0]))
        mode = str(rng.choice(["offset", "scale", "both"]))
        mean = float(p.loc[j])
        a = 1.0
        if mode != "offset" and abs(mean) > 0.2 * p.scale[j]:
            # a scale whose change of the mean is part (all, for "scale") of the shift
            part = shift if mode == "scale" else shift * float(rng.uniform(0.3, 0.7))
            a = 1.0 + part * p.scale[j] / mean
            if a < 0.05:  # would flip or crush the unit: take the rest as an offset
                a = 1.0
        b = shift * p.scale[j] - (a - 1.0) * mean
        out["features"].append(int(j))
        out["scale"].append(a)
        out["offset"].append(float(b))
        out["shift_sd"].append(shift)
    return out


def draw_drift(rng: np.random.Generator, kind: str, p: Problem, n_post: int) -> dict[str, Any]:
    draw = _DRIFTS.get(kind)
    if draw is None:
        raise ConfigError(f"unknown drift kind {kind!r}; choose one of: {', '.join(KINDS)}")
    return {"kind": kind, **draw(rng, p, n_post)}


def _unit_like(kind: str) -> Callable[[np.random.Generator, Problem, int], dict[str, Any]]:
    def draw(rng: np.random.Generator, p: Problem, n_post: int) -> dict[str, Any]:
        d = _draw_unit(rng, p)
        if kind == "ramp":
            d["ramp_rows"] = int(rng.integers(1000, 6001))
        if kind == "revert":
            d["revert_after"] = int(n_post * rng.uniform(0.2, 0.6))  # rows after the drift point
        return d

    return draw


def _draw_prior(rng: np.random.Generator, p: Problem, n_post: int) -> dict[str, Any]:
    factor = float(np.exp(rng.uniform(np.log(0.3), np.log(5.0))))
    return {"factor": factor, "fraud_rate": min(0.6, p.fraud_rate * factor)}


def _draw_cluster(rng: np.random.Generator, p: Problem, n_post: int) -> dict[str, Any]:
    ignored = np.flatnonzero(p.weights == 0)
    pool = ignored if len(ignored) >= 3 and rng.random() < 0.6 else np.arange(p.d)
    cols = rng.choice(pool, int(rng.integers(2, 4)), replace=False)
    return {
        "features": [int(j) for j in cols],
        "center": [float(v) for v in rng.choice([-1.0, 1.0], len(cols)) * rng.uniform(1.5, 3.0, len(cols))],
        "spread": float(rng.uniform(0.3, 0.7)),
        "share": float(p.fraud_rate * rng.uniform(0.5, 2.0)),
    }


def _draw_concept(rng: np.random.Generator, p: Problem, n_post: int) -> dict[str, Any]:
    w = p.weights.copy()
    informative = np.flatnonzero(w)
    flip = rng.choice(informative, int(rng.integers(1, min(3, len(informative)) + 1)), replace=False)
    w[flip] = -w[flip]
    moved = []
    ignored = np.flatnonzero(w == 0)
    if len(ignored):
        src = rng.choice(informative, 1)[0]
        dst = int(rng.choice(ignored))
        w[dst], w[src] = w[src] * float(rng.uniform(0.8, 1.5)), 0.0
        moved = [int(src), dst]
    return {"flipped": [int(j) for j in flip], "moved": moved, "weights": w.tolist()}


def _draw_category(rng: np.random.Generator, p: Problem, n_post: int) -> dict[str, Any]:
    return {"share": float(rng.uniform(0.02, 0.10)), "fraud_rate": float(rng.uniform(0.3, 0.8))}


def _draw_missing(rng: np.random.Generator, p: Problem, n_post: int) -> dict[str, Any]:
    cols = rng.choice(p.d, int(rng.integers(1, 4)), replace=False)
    return {"features": [int(j) for j in cols], "rate": float(rng.uniform(0.2, 0.6))}


_DRIFTS: dict[str, Callable[[np.random.Generator, Problem, int], dict[str, Any]]] = {
    "unit": _unit_like("unit"),
    "ramp": _unit_like("ramp"),
    "revert": _unit_like("revert"),
    "prior": _draw_prior,
    "cluster": _draw_cluster,
    "concept": _draw_concept,
    "category": _draw_category,
    "missing": _draw_missing,
    "none": lambda rng, p, n_post: {},
}
