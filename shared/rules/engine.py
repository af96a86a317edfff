"""Declarative domain rules: TOML in, vectorised masks, conflicts and weak labels out.

A rules file::

    [conflict]            # optional
    fraud_below = 0.30    # a fraud rule conflicts with the model when p < this
    normal_above = 0.70   # a normal rule conflicts when p > this

    [[rule]]
    name = "low_v14"
    when = "V14 < -1.5"
    label = "fraud"       # or "normal", 1 or 0
    weight = 1.0          # > 0; how much its weak label counts in healing

Weak labels: where rules fire, the weight-averaged label of the firing rules, with a
confidence of ``min(1, sum of their weights)``; where none fires, no weak label.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.errors import RulesError
from shared.rules.condition import ConditionError, Predicate, compile_condition
from shared.schema import Schema

_LABELS: dict[Any, int] = {"fraud": 1, "normal": 0, 1: 1, 0: 0}


@dataclass(frozen=True)
class Rule:
    name: str
    when: str
    label: int  # 1 fraud, 0 normal
    weight: float
    predicate: Predicate


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    features: tuple[str, ...]
    fraud_below: float = 0.30
    normal_above: float = 0.70
    source: str = ""  # the TOML text, kept for bundles

    @classmethod
    def empty(cls, features: Sequence[str]) -> RuleSet:
        return cls((), tuple(features))

    @classmethod
    def from_file(cls, path: str | Path, features: Sequence[str], schema: Schema | None = None) -> RuleSet:
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as exc:
            raise RulesError(f"cannot read rules file {p}: {exc.strerror}") from exc
        return cls.from_toml(text, features, origin=str(p), schema=schema)

    @classmethod
    def from_toml(
        cls, text: str, features: Sequence[str], origin: str = "rules", schema: Schema | None = None
    ) -> RuleSet:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RulesError(f"{origin}: not valid TOML: {exc}") from exc
        unknown = set(doc) - {"rule", "conflict"}
        if unknown:
            raise RulesError(f"{origin}: unknown section(s) {sorted(unknown)}; use [[rule]] and [conflict]")
        conflict = doc.get("conflict", {})
        fraud_below = float(conflict.get("fraud_below", 0.30))
        normal_above = float(conflict.get("normal_above", 0.70))
        if not (0.0 < fraud_below < 1.0 and 0.0 < normal_above < 1.0):
            raise RulesError(f"{origin}: [conflict] thresholds must lie in (0, 1)")
        entries = doc.get("rule", [])
        if not isinstance(entries, list):
            raise RulesError(f"{origin}: 'rule' must be an array of tables: write [[rule]]")
        rules: list[Rule] = []
        seen: set[str] = set()
        for k, entry in enumerate(entries):
            rules.append(_parse_rule(entry, k, features, origin, seen, schema))
        return cls(tuple(rules), tuple(features), fraud_below, normal_above, text)

    def __len__(self) -> int:
        return len(self.rules)

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.rules]

    def fires(self, X: np.ndarray) -> np.ndarray:
        """(N, n_rules) bool: which rule fires on which row."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != len(self.features):
            raise ValueError(f"expected (N, {len(self.features)}) features, got {X.shape}")
        if not self.rules:
            return np.zeros((len(X), 0), dtype=bool)
        return np.stack([r.predicate(X) for r in self.rules], axis=1)

    def weak_labels(
        self, X: np.ndarray, fired: np.ndarray | None = None, reliability: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(labels, confidence), both (N,) float32; confidence 0 where no rule fires.

        ``reliability`` (one factor in [0, 1] per rule) scales each rule's weight.
        """
        f = self.fires(X) if fired is None else fired
        if f.shape[1] == 0:
            z = np.zeros(len(f), dtype=np.float32)
            return z, z.copy()
        w = np.array([r.weight for r in self.rules], dtype=np.float64)
        if reliability is not None:
            w = w * np.clip(np.asarray(reliability, dtype=np.float64), 0.0, 1.0)
            f = f & (w > 0)
        lab = np.array([r.label for r in self.rules], dtype=np.float64)
        wsum = f @ w
        labels = np.divide(f @ (w * lab), wsum, out=np.zeros_like(wsum), where=wsum > 0)
        return labels.astype(np.float32), np.minimum(wsum, 1.0).astype(np.float32)

    def reliability(self, fired: np.ndarray, y: np.ndarray, min_support: int = 10) -> np.ndarray:
        """Per rule, how much labelled rows back it: ``(accuracy - 0.5) / 0.5`` clipped to [0, 1]
        where it fired on at least ``min_support`` labelled rows, else 1 (no evidence against it).

        A rule no better than a coin on the arrived labels gets no say in healing.
        """
        labelled = ~np.isnan(y)
        out = np.ones(len(self.rules))
        for k, rule in enumerate(self.rules):
            rows = fired[:, k] & labelled
            if rows.sum() >= min_support:
                acc = float((y[rows] == rule.label).mean())
                out[k] = min(1.0, max(0.0, (acc - 0.5) / 0.5))
        return out

    def conflicts(self, X: np.ndarray, probs: np.ndarray, fired: np.ndarray | None = None) -> np.ndarray:
        """(N,) bool: a fraud rule fires where p < fraud_below, or a normal rule where p > normal_above."""
        f = self.fires(X) if fired is None else fired
        p = np.asarray(probs).ravel()
        if f.shape[1] == 0:
            return np.zeros(len(p), dtype=bool)
        lab = np.array([r.label for r in self.rules])
        fraud_fired = f[:, lab == 1].any(axis=1)
        normal_fired = f[:, lab == 0].any(axis=1)
        return (fraud_fired & (p < self.fraud_below)) | (normal_fired & (p > self.normal_above))

    def fired_names(self, fired_row: np.ndarray) -> list[str]:
        return [r.name for r, on in zip(self.rules, fired_row, strict=True) if on]


def _parse_rule(
    entry: Any, k: int, features: Sequence[str], origin: str, seen: set[str], schema: Schema | None = None
) -> Rule:
    if not isinstance(entry, dict):
        raise RulesError(f"{origin}: rule #{k + 1} is not a table")
    name = entry.get("name")
    where = f"{origin}: rule {name!r}" if isinstance(name, str) and name else f"{origin}: rule #{k + 1}"
    if not isinstance(name, str) or not name.strip():
        raise RulesError(f"{where}: needs a non-empty 'name'")
    if name in seen:
        raise RulesError(f"{where}: the name is used twice")
    seen.add(name)
    extra = set(entry) - {"name", "when", "label", "weight"}
    if extra:
        raise RulesError(f"{where}: unknown key(s) {sorted(extra)}")
    when = entry.get("when")
    if not isinstance(when, str):
        raise RulesError(f"{where}: needs a 'when' condition string")
    try:
        predicate = compile_condition(when, features, schema)
    except ConditionError as exc:
        raise RulesError(f"{where}: bad condition {when!r}: {exc}") from exc
    raw_label = entry.get("label", "fraud")
    if isinstance(raw_label, bool) or raw_label not in _LABELS:
        raise RulesError(f"{where}: label must be 'fraud', 'normal', 1 or 0, got {raw_label!r}")
    weight = entry.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
        raise RulesError(f"{where}: weight must be a positive number, got {weight!r}")
    return Rule(name, when, _LABELS[raw_label], float(weight), predicate)
