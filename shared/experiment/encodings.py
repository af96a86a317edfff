"""One-hot or embeddings for category fields, and how many values get their own input:
the measurement behind ``selfheal train``'s defaults (``selfheal encodings``).

Two tables, each trained on 20,000 rows and judged on 40,000 fresh ones at the threshold
chosen on its validation rows, for five seeds:

* ``payments``: the payments scenario's training table (3 fields of 3-5 values);
* ``merchants``: one field of 400 merchants (Zipf-distributed: a few large, many small),
  each with its own fraud log-odds, beside an amount and a 3-value country: the high
  cardinality where embeddings are said to pay.

Variants: one-hot with at most 20 or 100 values per field (a value needs 30 training
rows either way), and embeddings (:meth:`shared.schema.Schema.encoded`) with 100.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from shared.data.payments import payments_table
from shared.evaluation import CostMatrix, cost_optimal_threshold, evaluate_scores
from shared.healing.fit import log_loss
from shared.model import ModelConfig
from shared.schema import Schema
from shared.training import TrainConfig, split_validation, train_model

Table = Callable[[int, int], dict[str, list[object]]]
VARIANTS = ((20, "onehot"), (100, "onehot"), (100, "embedding"))  # (max categories, encoding)


def merchants_table(n: int, seed: int, merchants: int = 400) -> dict[str, list[object]]:
    """``n`` rows; the merchants' popularity and risk are the same for every seed."""
    rng, world = np.random.default_rng(seed), np.random.default_rng(1234)
    share = 1 / np.arange(1, merchants + 1) ** 1.1
    risk = world.normal(-3.2, 1.4, merchants)  # each merchant's fraud log-odds
    m = rng.choice(merchants, n, p=share / share.sum())
    amount = rng.lognormal(3, 1, n)
    y = rng.random(n) < 1 / (1 + np.exp(-(risk[m] + 0.6 * (np.log(amount) - 3))))
    return {
        "merchant": [f"m{i}" for i in m],
        "country": [str(c) for c in rng.choice(["FR", "DE", "ES"], n)],
        "amount": np.round(amount, 2).tolist(),
        "Class": y.astype(int).tolist(),
    }


TABLES: dict[str, Table] = {"payments": payments_table, "merchants": merchants_table}


def measure(table: Table, seed: int, max_categories: int, encoding: str, n: int = 20_000) -> dict[str, Any]:
    """Train one variant; its validation and test log loss, test cost and inputs."""
    train, test = table(n, seed), table(2 * n, seed + 1000)
    y, y_test = (np.asarray(t.pop("Class"), np.float64) for t in (train, test))
    schema = Schema.infer(train, max_categories=max_categories).encoded(encoding)
    X, X_test = schema.encode_columns(train), schema.encode_columns(test)
    tr, va = split_validation(len(y), y, 0.2, seed)
    t0 = time.perf_counter()
    cfg = ModelConfig(n_features=X.shape[1])
    model, _ = train_model(X[tr], y[tr], cfg, TrainConfig(seed=seed), schema.embeddings())
    seconds = time.perf_counter() - t0
    p_val, p_test = model.predict_proba(X[va]), model.predict_proba(X_test)
    costs = CostMatrix()
    cost = evaluate_scores(y_test, p_test, cost_optimal_threshold(y[va], p_val, costs), costs).cost
    return {
        "seed": seed,
        "inputs": X.shape[1],
        "validation_log_loss": round(log_loss(y[va], p_val), 5),
        "test_log_loss": round(log_loss(y_test, p_test), 5),
        "test_cost": round(cost, 4),
        "train_seconds": round(seconds, 1),
    }


def compare(seeds: tuple[int, ...] = (42, 1, 2, 3, 4), say: Callable[[str], None] = print) -> dict[str, Any]:
    """Every table, variant and seed; per table and variant the runs and their means."""
    t0 = time.perf_counter()
    out: dict[str, Any] = {"seeds": list(seeds), "tables": {}}
    for name, table in TABLES.items():
        rows = {}
        for cap, encoding in VARIANTS:
            runs = [measure(table, s, cap, encoding) for s in seeds]
            mean = {k: round(float(np.mean([r[k] for r in runs])), 4) for k in runs[0] if k != "seed"}
            rows[f"{encoding}, at most {cap}"] = {"mean": mean, "runs": runs}
            say(f"{name}: {encoding}, at most {cap} values: test cost {mean['test_cost']:.4f}")
        out["tables"][name] = rows
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def format_table(result: dict[str, Any]) -> str:
    lines = [
        "| table | variant | inputs | validation log loss | test log loss | test cost | training s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rows in result["tables"].items():
        for variant, r in rows.items():
            m = r["mean"]
            lines.append(
                f"| {name} | {variant} | {m['inputs']:.0f} | {m['validation_log_loss']:.4f} | "
                f"{m['test_log_loss']:.4f} | {m['test_cost']:.4f} | {m['train_seconds']:.1f} |"
            )
    return "\n".join(lines)
