"""A known generator of transactions: class-conditional Gaussian mixtures with a fraud rate.

Because the generator is known, so is the Bayes posterior ``p(fraud | x)`` for any row,
which gives the Bayes-optimal reference row of every experiment. A regime may observe
some features as ``exp(latent)`` (amounts) and apply a per-feature affine map
``scale * value + offset`` (a recalibration); neither changes the posterior's form, since
the same Jacobian divides both classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

LOG_2PI = float(np.log(2 * np.pi))


@dataclass(frozen=True)
class Component:
    weight: float  # mixture weight within its class
    mean: tuple[float, ...]  # latent mean per feature
    std: tuple[float, ...]  # latent standard deviation per feature


@dataclass(frozen=True)
class Regime:
    fraud_rate: float
    normal: tuple[Component, ...]
    fraud: tuple[Component, ...]
    log_features: tuple[int, ...] = ()  # observed value = exp(latent) for these columns
    scale: tuple[float, ...] | None = None  # observed = scale * value + offset, per column
    offset: tuple[float, ...] | None = None

    @property
    def n_features(self) -> int:
        return len(self.normal[0].mean)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` rows: features (n, d) float32 and labels (n,) float32, in random order."""
        y = (rng.random(n) < self.fraud_rate).astype(np.float32)
        X = np.empty((n, self.n_features), dtype=np.float64)
        for label, comps in ((0.0, self.normal), (1.0, self.fraud)):
            rows = np.flatnonzero(y == label)
            weights = np.array([c.weight for c in comps])
            which = rng.choice(len(comps), size=len(rows), p=weights / weights.sum())
            for k, comp in enumerate(comps):
                r = rows[which == k]
                X[r] = rng.normal(comp.mean, comp.std, size=(len(r), self.n_features))
        return self._observe(X).astype(np.float32), y

    def posterior(self, X: np.ndarray) -> np.ndarray:
        """Bayes posterior p(fraud | x) for observed rows."""
        z = self._latent(np.asarray(X, dtype=np.float64))
        log_n = np.log1p(-self.fraud_rate) + _mixture_logpdf(z, self.normal)
        log_f = np.log(self.fraud_rate) + _mixture_logpdf(z, self.fraud)
        p: np.ndarray = 1.0 / (1.0 + np.exp(np.clip(log_n - log_f, -700, 700)))
        return p

    def blend(self, other: Regime, w: float) -> Regime:
        """``(1 - w) * self + w * other``, parameter by parameter (for incremental drift)."""

        def mix(a: Sequence[float], b: Sequence[float]) -> tuple[float, ...]:
            return tuple((1 - w) * x + w * y for x, y in zip(a, b, strict=True))

        def mix_comps(a: tuple[Component, ...], b: tuple[Component, ...]) -> tuple[Component, ...]:
            return tuple(
                Component(mix([ca.weight], [cb.weight])[0], mix(ca.mean, cb.mean), mix(ca.std, cb.std))
                for ca, cb in zip(a, b, strict=True)
            )

        ones, zeros = (1.0,) * self.n_features, (0.0,) * self.n_features
        return replace(
            self,
            fraud_rate=mix([self.fraud_rate], [other.fraud_rate])[0],
            normal=mix_comps(self.normal, other.normal),
            fraud=mix_comps(self.fraud, other.fraud),
            scale=mix(self.scale or ones, other.scale or ones),
            offset=mix(self.offset or zeros, other.offset or zeros),
        )

    def _observe(self, z: np.ndarray) -> np.ndarray:
        x = z.copy()
        for j in self.log_features:
            x[:, j] = np.exp(z[:, j])
        if self.scale is not None:
            x = x * np.asarray(self.scale)
        if self.offset is not None:
            x = x + np.asarray(self.offset)
        return x

    def _latent(self, x: np.ndarray) -> np.ndarray:
        z = x.copy()
        if self.offset is not None:
            z = z - np.asarray(self.offset)
        if self.scale is not None:
            z = z / np.asarray(self.scale)
        for j in self.log_features:
            z[:, j] = np.log(np.maximum(z[:, j], 1e-300))
        return z


def _mixture_logpdf(z: np.ndarray, comps: tuple[Component, ...]) -> np.ndarray:
    total = sum(c.weight for c in comps)
    parts = []
    for c in comps:
        if c.weight <= 0:
            continue
        mu, sd = np.asarray(c.mean), np.asarray(c.std)
        ll = -0.5 * (((z - mu) / sd) ** 2 + LOG_2PI) - np.log(sd)
        parts.append(np.log(c.weight / total) + ll.sum(axis=1))
    return np.logaddexp.reduce(np.stack(parts), axis=0)  # type: ignore[no-any-return]
