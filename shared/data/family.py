"""A scenario family: whole fraud problems and drifts drawn from wide ranges, by seed.

The library's scenarios are points; a fraud team's drift will be none of them. ``sample``
draws a *problem* (8-40 features whose neighbours correlate, a fraud rate of 0.5-20%, a
labelling function on 3-10 informative features with at least one interaction, optionally
a category field and columns with missing cells) and a *drift* of one kind:

``unit``      a unit change upstream: scale and/or offset on 1-4 features (informative or
              not), moving each by 0.5-3 of its standard deviation, for every row;
``ramp``      the same change reached linearly over 1,000-6,000 rows;
``prior``     the fraud rate times 0.3-5, the classes unchanged (label shift);
``cluster``   a new fraud ring: rows concentrated on 2-3 features, often ones the
              labelling function ignored, adding 0.5-2x the fraud there was;
``concept``   the labelling function changes: weights flip and move to other features;
``category``  a category value never seen in training, carrying fraud;
``missing``   the missing rate of 1-3 columns jumps to 20-60%;
``revert``    a unit change that upstream fixes part-way through the stream;
``combo``     two of the above at once;
``none``      no drift at all.

Everything is drawn from continuous ranges with ``numpy.random.default_rng(seed)``; the
parameters are kept beside the stream (``FamilyScenario.params``) and written with it.
The labels come from a known generator, so each row's Bayes posterior is known too (for a
row with missing cells: the posterior of the full row before its cells went missing).

>>> fs = sample(20, n_post=1000)
>>> fs.kind, fs.scenario.stream.drift_at, len(fs.scenario.stream), len(fs.scenario.features) >= 8
('unit', 2000, 3000, True)
>>> fs.params == sample(20, n_post=1000).params
True
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.data.drawn import COMBINABLE, KINDS, Problem, draw_drift, draw_problem, sigmoid, solve_intercept
from shared.data.shapes import LABEL, Dataset, Scenario, Stream
from shared.errors import ConfigError
from shared.schema import Schema

CATEGORY = "cat"  # the category field's name
NEW_VALUE = "new"  # the category value a ``category`` drift brings


# --------------------------------------------------------------------------- the stream
@dataclass
class _Rows:
    z: np.ndarray
    c: np.ndarray  # category index; -1: the new value
    y: np.ndarray
    posterior: np.ndarray


class _Generator:
    """Rows of the problem under a set of drifts, each at an intensity in [0, 1]."""

    def __init__(self, p: Problem, drifts: list[dict[str, Any]], intercept2: float | None) -> None:
        self.p, self.drifts, self.intercept2 = p, drifts, intercept2

    def _get(self, kind: str) -> dict[str, Any] | None:
        return next((d for d in self.drifts if d["kind"] == kind), None)

    def rows(self, rng: np.random.Generator, n: int, on: bool) -> _Rows:
        """``n`` rows with the label-side drifts (prior, cluster, concept, category) on or off."""
        p = self.p
        concept = self._get("concept") if on else None
        weights = np.asarray(concept["weights"]) if concept else None
        intercept = self.intercept2 if concept else None
        prior = self._get("prior") if on else None
        # label shift by thinning one class: keep fraud with af, normal with an
        af = an = 1.0
        if prior is not None:
            odds = (prior["fraud_rate"] / (1 - prior["fraud_rate"])) / (p.fraud_rate / (1 - p.fraud_rate))
            af, an = (1.0, 1.0 / odds) if odds > 1 else (odds, 1.0)
        zs, cs, ys, ps = [], [], [], []
        got = 0
        while got < n:
            m = int((n - got) * 1.2 / max(min(af, an) if prior else 1.0, 0.02)) + 16
            z, c = p.latent(rng, m), p.cats(rng, m)
            f = p.logit(z, c, weights, intercept)
            y = rng.random(m) < sigmoid(f)
            keep = rng.random(m) < np.where(y, af, an)
            zs.append(z[keep])
            cs.append(c[keep])
            ys.append(y[keep])
            ps.append(sigmoid(f[keep] + np.log(af / an)))
            got += int(keep.sum())
        r = _Rows(
            np.concatenate(zs)[:n], np.concatenate(cs)[:n], np.concatenate(ys)[:n], np.concatenate(ps)[:n]
        )
        if on:
            self._cluster(rng, r, af, an)
            self._category(rng, r)
        return r

    def _cluster(self, rng: np.random.Generator, r: _Rows, af: float, an: float) -> None:
        cl = self._get("cluster")
        if cl is None:
            return
        n = len(r.y)
        ring = rng.random(n) < cl["share"]
        cols, center, spread = np.asarray(cl["features"]), np.asarray(cl["center"]), cl["spread"]
        r.z[np.ix_(ring, cols)] = center + spread * rng.standard_normal((int(ring.sum()), len(cols)))
        r.y[ring] = True
        # posterior: regular rows (the thinned base) against the ring's density
        p = self.p
        log_base = p.logpdf(r.z)
        zr = r.z.copy()
        zr[:, cols] = 0.0
        rest = [j for j in range(p.d) if j not in set(cols.tolist())]
        log_ring = _marginal_logpdf(p, zr, rest)
        log_ring = log_ring - 0.5 * (
            ((r.z[:, cols] - center) / spread) ** 2 + np.log(2 * np.pi * spread**2)
        ).sum(axis=1)
        s = self._sigmoid_regular(r)
        norm = an * (1 - p.fraud_rate) + af * p.fraud_rate
        dens_reg = np.exp(log_base) * (an * (1 - s) + af * s) / norm
        dens_ring = np.exp(log_ring)
        w_reg, w_ring = (1 - cl["share"]) * dens_reg, cl["share"] * dens_ring
        post_reg = af * s / np.maximum(an * (1 - s) + af * s, 1e-300)
        r.posterior = (w_reg * post_reg + w_ring) / np.maximum(w_reg + w_ring, 1e-300)

    def _sigmoid_regular(self, r: _Rows) -> np.ndarray:
        concept = self._get("concept")
        weights = np.asarray(concept["weights"]) if concept else None
        return sigmoid(self.p.logit(r.z, np.maximum(r.c, 0), weights, self.intercept2 if concept else None))

    def _category(self, rng: np.random.Generator, r: _Rows) -> None:
        cat = self._get("category")
        if cat is None:
            return
        new = rng.random(len(r.y)) < cat["share"]
        r.c[new] = -1
        r.y[new] = rng.random(int(new.sum())) < cat["fraud_rate"]
        r.posterior[new] = cat["fraud_rate"]

    def observe(
        self, r: _Rows, unit_w: np.ndarray, missing_w: np.ndarray, rng: np.random.Generator
    ) -> dict[str, list[object]]:
        """Raw columns: each feature ``loc + scale * z``, then the unit change at its row's
        intensity, then cells blanked at the row's missing rates."""
        p = self.p
        x = p.loc + p.scale * r.z
        for d in self.drifts:
            if d["kind"] in ("unit", "ramp", "revert"):
                for j, a, b in zip(d["features"], d["scale"], d["offset"], strict=True):
                    x[:, j] = (1 + unit_w * (a - 1)) * x[:, j] + unit_w * b
        cols: dict[str, list[object]] = {
            name: x[:, j].astype(np.float32).tolist() for j, name in enumerate(p.names)
        }
        rates = dict(p.missing)
        miss = self._get("missing")
        blank = {j: np.full(len(r.y), q) for j, q in rates.items()}
        if miss is not None:
            for j in miss["features"]:
                base = rates.get(j, 0.0)
                blank[j] = base + missing_w * (miss["rate"] - base)
        for j, q in blank.items():
            values = cols[p.names[j]]
            for i in np.flatnonzero(rng.random(len(r.y)) < q):
                values[i] = None
        if p.cat_probs is not None:
            cols[CATEGORY] = [NEW_VALUE if k < 0 else f"c{k}" for k in r.c.tolist()]
        return cols


def _marginal_logpdf(p: Problem, z: np.ndarray, keep: list[int]) -> np.ndarray:
    """log density of z[:, keep] under the base Gaussian's marginal on those columns."""
    if not keep:
        return np.zeros(len(z))
    idx = np.asarray(keep)
    cov = p.rho ** np.abs(np.subtract.outer(idx, idx)).astype(float)
    chol = np.linalg.cholesky(cov)
    sol = np.linalg.solve(chol, z[:, idx].T)
    return -0.5 * (sol**2).sum(axis=0) - np.log(np.diag(chol)).sum() - 0.5 * len(idx) * np.log(2 * np.pi)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- the scenario
@dataclass(frozen=True)
class FamilyScenario:
    scenario: Scenario
    params: dict[str, Any]  # what was drawn: the problem and the drift

    @property
    def kind(self) -> str:
        return str(self.params["drift"]["kind"])

    def write(self, out_dir: str | Path) -> Path:
        """The scenario's CSVs and rules (as ``selfheal scenario export`` writes them) and
        ``params.json`` beside them."""
        out = self.scenario.write_csv(out_dir)
        (out / "params.json").write_text(json.dumps(self.params, indent=2) + "\n")
        return out


def sample(seed: int, n_pre: int = 2000, n_post: int = 8000, kind: str | None = None) -> FamilyScenario:
    """Draw a problem and a drift with ``seed``; ``kind`` forces the drift's kind (otherwise
    ``KINDS[seed % 10]``, so that a run of consecutive seeds holds every kind equally often;
    everything else is drawn from the seed). The stream has ``n_pre`` clean rows then ``n_post``."""
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"unknown drift kind {kind!r}; choose one of: {', '.join(KINDS)}")
    if n_pre < 1 or n_post < 1:
        raise ConfigError(f"need n_pre >= 1 and n_post >= 1, got {n_pre}, {n_post}")
    rng = np.random.default_rng(seed)
    kind = kind or KINDS[seed % len(KINDS)]  # stratified: any ten seeds in a row draw every kind once
    parts = [kind]
    if kind == "combo":  # two different kinds; a unit change and its ramp are one kind here
        first = str(rng.choice(COMBINABLE))
        rest = [k for k in COMBINABLE if k != first and {k, first} != {"unit", "ramp"}]
        parts = [first, str(rng.choice(rest))]
    p = draw_problem(rng, need_category="category" in parts, need_missing=False)
    drifts = [draw_drift(rng, k, p, n_post) for k in parts]
    concept = next((d for d in drifts if d["kind"] == "concept"), None)
    intercept2 = None
    if concept is not None:
        intercept2 = solve_intercept(p, rng, p.fraud_rate, np.asarray(concept["weights"]))
    gen = _Generator(p, drifts, intercept2)
    n_train = int(np.clip(200 / p.fraud_rate, 10_000, 40_000))
    clean = _Generator(p, [], None)
    train = clean.rows(rng, n_train, on=False)
    test = clean.rows(rng, 5000, on=False)
    pre = gen.rows(rng, n_pre, on=False)
    post = gen.rows(rng, n_post, on=True)
    stream = _Rows(
        np.vstack([pre.z, post.z]),
        np.concatenate([pre.c, post.c]),
        np.concatenate([pre.y, post.y]),
        np.concatenate([pre.posterior, post.posterior]),
    )
    unit_w, missing_w = _intensities(drifts, n_pre, n_post)
    zeros = np.zeros(n_train)
    tables = {
        "train": clean.observe(train, zeros, zeros, rng),
        "test": clean.observe(test, np.zeros(5000), np.zeros(5000), rng),
        "stream": gen.observe(stream, unit_w, missing_w, rng),
    }
    drift_params = drifts[0] if kind != "combo" else {"kind": "combo", "parts": drifts}
    params = {
        "seed": seed,
        "problem": _problem_params(p),
        "drift": drift_params,
        "n_pre": n_pre,
        "n_post": n_post,
    }
    name = f"family-{seed}"
    sc = _scenario(
        name, p, tables, {"train": train.y, "test": test.y, "stream": stream.y}, stream.posterior, n_pre, kind
    )
    return FamilyScenario(sc, params)


def _intensities(drifts: list[dict[str, Any]], n_pre: int, n_post: int) -> tuple[np.ndarray, np.ndarray]:
    """Each stream row's unit-change and missing-rate intensity (0 before the drift)."""
    n = n_pre + n_post
    pos = np.arange(n) - n_pre
    unit = np.zeros(n)
    missing = (pos >= 0).astype(float)
    for d in drifts:
        if d["kind"] == "unit":
            unit = (pos >= 0).astype(float)
        elif d["kind"] == "ramp":
            unit = np.clip((pos + 1) / d["ramp_rows"], 0.0, 1.0) * (pos >= 0)
        elif d["kind"] == "revert":
            unit = ((pos >= 0) & (pos < d["revert_after"])).astype(float)
    return unit, missing


def _problem_params(p: Problem) -> dict[str, Any]:
    return {
        "features": p.d,
        "fraud_rate": p.fraud_rate,
        "rho": p.rho,
        "informative": [int(j) for j in np.flatnonzero(p.weights)],
        "weights": [round(float(w), 4) for w in p.weights],
        "interactions": [list(t) for t in p.pairs],
        "category_values": None if p.cat_probs is None else len(p.cat_probs),
        "missing": {str(j): q for j, q in p.missing.items()},
    }


def _rules(p: Problem, train: dict[str, list[object]], y: np.ndarray) -> str:
    """One rule a fraud team might write: the strongest feature past the value where the
    training fraud share is highest (its 2% tail towards fraud)."""
    j = int(np.argmax(np.abs(p.weights)))
    x = np.array([np.nan if v is None else float(v) for v in train[p.names[j]]])  # type: ignore[arg-type]
    ok = ~np.isnan(x)
    high = p.weights[j] > 0
    cut = float(np.quantile(x[ok], 0.98 if high else 0.02))
    op = ">" if high else "<"
    return (
        f'# The strongest feature\'s 2% tail towards fraud.\n[[rule]]\nname = "{p.names[j]}_tail"\n'
        f'when = "{p.names[j]} {op} {cut:.6g}"\nlabel = "fraud"\nweight = 1.0\n'
    )


def _scenario(
    name: str,
    p: Problem,
    tables: dict[str, dict[str, list[object]]],
    labels: dict[str, np.ndarray],
    posterior: np.ndarray,
    n_pre: int,
    kind: str,
) -> Scenario:
    rules = _rules(p, tables["train"], labels["train"])
    n = len(labels["stream"])
    ids = np.array([f"{name}-{i:07d}" for i in range(n)])
    drift_at = None if kind == "none" else n_pre
    description = f"a drawn problem ({p.d} features, fraud {p.fraud_rate:.1%}) with a {kind} drift"
    schema_needed = (
        p.cat_probs is not None
        or bool(p.missing)
        or any(v is None for col in tables["stream"].values() for v in col)
    )
    if not schema_needed:
        X = {k: np.column_stack([np.asarray(t[c], np.float32) for c in p.names]) for k, t in tables.items()}
        return Scenario(
            name,
            description,
            p.names,
            rules,
            Dataset(X["train"], labels["train"].astype(np.float32)),
            Dataset(X["test"], labels["test"].astype(np.float32)),
            Stream(ids, X["stream"], labels["stream"].astype(np.float32), drift_at, posterior),
        )
    schema = Schema.infer(tables["train"], categorical=[CATEGORY] if p.cat_probs is not None else ())
    raw = tuple({k: tables["stream"][k][i] for k in tables["stream"]} for i in range(n))
    raw_tables = {
        key: {
            "id": [f"{key}-{i}" for i in range(len(labels[key]))],
            **cols,
            LABEL: labels[key].astype(int).tolist(),
        }
        for key, cols in tables.items()
    }
    raw_tables["stream"]["id"] = list(ids)
    return Scenario(
        name,
        description,
        schema.columns,
        rules,
        Dataset(schema.encode_columns(tables["train"]), labels["train"].astype(np.float32)),
        Dataset(schema.encode_columns(tables["test"]), labels["test"].astype(np.float32)),
        Stream(
            ids,
            schema.encode_columns(tables["stream"]),
            labels["stream"].astype(np.float32),
            drift_at,
            posterior,
            raw,
        ),
        schema=schema,
        raw_tables=raw_tables,
    )


__all__ = ["KINDS", "FamilyScenario", "Problem", "sample"]
