"""Training the base model on clean data, and choosing its decision threshold by cost."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from shared.bundle import Bundle, ReferenceRows
from shared.data import FAMILY_PREFIX, Scenario, build
from shared.drift.scores import reference_quantiles
from shared.errors import SelfhealError
from shared.evaluation import CostMatrix, cost_optimal_threshold, evaluate_scores
from shared.healing.fit import row_log_loss
from shared.model import ModelConfig, SelfHealingModel
from shared.rules import RuleSet
from shared.schema import Schema


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20  # passes over the training rows
    lr: float = 1e-3  # Adam learning rate
    batch_size: int = 100  # rows per step
    seed: int = 42  # torch seed for initialisation and shuffling
    val_fraction: float = 0.2  # rows held out to pick the threshold (0: every row trains)
    threshold: float | None = None  # a fixed decision threshold (None: cost-optimal on the held-out rows)
    encoding: str | None = None  # category fields: onehot, embedding, auto (None: as the schema says)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reference_stats(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and (population) standard deviation of the training rows."""
    x = np.asarray(X, dtype=np.float64)
    return x.mean(axis=0), x.std(axis=0)


def reference(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What a bundle keeps of the training rows for FIDI: mean, std and quantiles per feature."""
    return (*reference_stats(X), reference_quantiles(X))


class Embeddings(nn.Module):
    """The first layer's weights with each embedded category field's block factored,
    ``W[:, block] = A E``: the field's categories embedded in ``dim`` dimensions (``E``),
    then the layer (``A``). An embedding lookup followed by a linear layer is exactly this
    product on the one-hot inputs, so once trained it folds into an ordinary first layer
    (``torch.nn.utils.parametrize``, ``leave_parametrized``): the frozen model, the
    scorer and the adapter do not know which encoding trained it."""

    def __init__(self, hidden: int, n_features: int, blocks: Sequence[tuple[Sequence[int], int]]) -> None:
        super().__init__()
        self.cols = [torch.as_tensor(list(c)) for c, _ in blocks]
        # Var(A E) = dim Var(A) Var(E): the spread nn.Linear starts with, 1 / (3 n_features)
        self.a = nn.ParameterList(
            nn.Parameter(torch.randn(hidden, d) / math.sqrt(3 * n_features * d)) for _, d in blocks
        )
        self.e = nn.ParameterList(nn.Parameter(torch.randn(d, len(c))) for c, d in blocks)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        for cols, a, e in zip(self.cols, self.a, self.e, strict=True):
            w = w.index_copy(1, cols, a @ e)
        return w


def train_model(
    X: np.ndarray,
    y: np.ndarray,
    model_config: ModelConfig | None = None,
    config: TrainConfig | None = None,
    embed: Sequence[tuple[Sequence[int], int]] = (),
) -> tuple[SelfHealingModel, list[float]]:
    """Train backbone, adapter and head together on clean rows (the adapter's input path
    stays zero); returns the model and epoch losses.

    Inputs are standardised inside the model with the training mean and std. An input
    constant in training (a category named by a rule but not seen yet) gets no weight in
    the backbone: the frozen model ignores it; rules, the monitor and the adapter's input
    path do not. ``embed``: (input columns, dim) of each category field trained through an
    embedding (:class:`Embeddings`) instead of one-hot.
    """
    cfg = config or TrainConfig()
    mcfg = model_config or ModelConfig(n_features=X.shape[1])
    if mcfg.n_features != X.shape[1]:
        raise ValueError(f"model expects {mcfg.n_features} features, data has {X.shape[1]}")
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        model = SelfHealingModel(mcfg)
        mean, std = reference_stats(X)
        model.input_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        model.input_std.copy_(torch.as_tensor(np.where(std > 0, std, 1.0), dtype=torch.float32))
        first = model.backbone[0]
        assert isinstance(first, nn.Linear)
        if embed:
            parametrize.register_parametrization(first, "weight", Embeddings(mcfg.hidden, X.shape[1], embed))
        xt = torch.as_tensor(np.asarray(X, dtype=np.float32))
        yt = torch.as_tensor(np.asarray(y, dtype=np.float32))
        # foreach: one call per step for every tensor, the same arithmetic (bitwise the same
        # model) about a quarter faster than a loop over them; fused would change the bits
        opt = torch.optim.Adam(model.trained_with_base(), lr=cfg.lr, foreach=True)
        loss_fn = nn.BCEWithLogitsLoss()
        losses: list[float] = []
        model.train()
        for _ in range(cfg.epochs):
            perm = torch.randperm(len(xt))
            total = 0.0
            for i in range(0, len(xt), cfg.batch_size):
                idx = perm[i : i + cfg.batch_size]
                opt.zero_grad()
                loss = loss_fn(model(xt[idx]), yt[idx])
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            losses.append(total / len(xt))
        if embed:
            parametrize.remove_parametrizations(first, "weight", leave_parametrized=True)
        with torch.no_grad():  # an input constant in training was 0 after standardising: its
            first.weight[:, torch.as_tensor(std == 0)] = 0.0  # weights never mattered; now they never will
    model.eval()
    return model, losses


def choose_threshold(
    model: SelfHealingModel, X_val: np.ndarray, y_val: np.ndarray, costs: CostMatrix
) -> tuple[float, dict[str, Any]]:
    """The threshold minimising expected cost on validation rows, with the metrics it gives."""
    scores = model.predict_proba(X_val)
    threshold = cost_optimal_threshold(y_val, scores, costs)
    return threshold, evaluate_scores(y_val, scores, threshold, costs).to_dict()


def split_validation(n: int, y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train_idx, val_idx): ``fraction`` of each class goes to validation."""
    rng = np.random.default_rng(seed)
    val: list[np.ndarray] = []
    for label in (0.0, 1.0):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        val.append(idx[: round(len(idx) * fraction)])
    val_idx = np.sort(np.concatenate(val))
    train_idx = np.setdiff1d(np.arange(n), val_idx)
    return train_idx, val_idx


def build_bundle(
    X: np.ndarray,
    y: np.ndarray,
    features: list[str] | tuple[str, ...],
    rules_toml: str = "",
    costs: CostMatrix | None = None,
    *,
    label: str = "label",
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    source: str = "",
    schema: Schema | None = None,
) -> Bundle:
    """Train on ``1 - val_fraction`` of the rows (``train_config``); pick the cost-optimal
    threshold on the rest.

    With ``val_fraction=0`` every row trains and ``threshold`` must be given. ``encoding``:
    how category fields train (``onehot``, ``embedding``, ``auto``: :func:`_train`; None:
    as ``schema`` says). All three are settings of ``train_config``.
    """
    costs = costs or CostMatrix()
    tcfg = train_config or TrainConfig()
    val_fraction, threshold, encoding = tcfg.val_fraction, tcfg.threshold, tcfg.encoding
    RuleSet.from_toml(rules_toml, features, schema=schema)  # fail early, naming the rule
    if val_fraction > 0:
        tr, va = split_validation(len(y), y, val_fraction, tcfg.seed)
    else:
        if threshold is None:
            raise ValueError("with no validation rows a threshold must be given")
        tr, va = np.arange(len(y)), np.arange(0)
    model, losses, schema, measured = _train(X, y, tr, va, schema, encoding, model_config, tcfg)
    info: dict[str, Any] = {
        "source": source,
        "rows": {"train": len(tr), "validation": len(va)},
        "fraud_rate": float(y.mean()),
        "train_config": tcfg.to_dict(),
        "final_loss": losses[-1],
    } | ({"encodings": measured} if measured else {})
    if len(va):
        chosen, val_metrics = choose_threshold(model, X[va], y[va], costs)
        info["validation"] = val_metrics
        threshold = chosen if threshold is None else threshold
        rules = RuleSet.from_toml(rules_toml, features, schema=schema)
        conflicts = rules.conflicts(X[va], model.predict_proba(X[va]))
        info["reference_conflict_rate"] = float(conflicts.mean())
    assert threshold is not None
    return Bundle.from_model(
        model,
        features,
        reference(X[tr]),
        rules_toml,
        threshold,
        costs,
        label=label,
        info=info,
        reference_rows=reference_rows(X, y, tr, va, tcfg.seed),
        schema=schema,
    )


AUTO_Z = 2.0  # ``auto`` keeps embeddings when they beat one-hot by this many standard errors


def _train(
    X: np.ndarray,
    y: np.ndarray,
    tr: np.ndarray,
    va: np.ndarray,
    schema: Schema | None,
    encoding: str | None,
    mcfg: ModelConfig | None,
    tcfg: TrainConfig,
) -> tuple[SelfHealingModel, list[float], Schema | None, dict[str, Any]]:
    """The model (and the schema it was trained with): one encoding as asked, or with
    ``auto`` both, measured by log loss on the validation rows: the simpler one-hot unless
    embeddings predict them better by ``AUTO_Z`` standard errors of the paired per-row
    difference; returns the measurements too."""
    if schema is None or encoding is None:
        embed = schema.embeddings() if schema is not None else []
        return (*train_model(X[tr], y[tr], mcfg, tcfg, embed), schema, {})
    if encoding != "auto":
        schema = schema.encoded(encoding)
        return (*train_model(X[tr], y[tr], mcfg, tcfg, schema.embeddings()), schema, {})
    if not len(va):
        raise ValueError("encoding 'auto' measures on validation rows: val_fraction must be > 0")
    tried: dict[str, tuple[np.ndarray, SelfHealingModel, list[float], Schema]] = {}
    for name in ("onehot", "embedding"):
        s = schema.encoded(name)
        model, losses = train_model(X[tr], y[tr], mcfg, tcfg, s.embeddings())
        tried[name] = (row_log_loss(y[va], model.predict_proba(X[va])), model, losses, s)
    gain = tried["onehot"][0] - tried["embedding"][0]  # per validation row: what embeddings save
    z = float(gain.mean() / max(gain.std() / np.sqrt(len(gain)), 1e-12))
    best = "embedding" if z >= AUTO_Z else "onehot"
    _, model, losses, s = tried[best]
    measured = {f"validation_log_loss_{k}": round(float(v[0].mean()), 6) for k, v in tried.items()}
    return model, losses, s, {"kept": best, "embedding_gain_z": round(z, 2), **measured}


REFERENCE_TRAIN_ROWS = 4000  # training rows a bundle keeps as its reference (a sample past this)


def reference_rows(X: np.ndarray, y: np.ndarray, tr: np.ndarray, va: np.ndarray, seed: int) -> ReferenceRows:
    """Every validation row and up to ``REFERENCE_TRAIN_ROWS`` training rows, with labels."""
    rng = np.random.default_rng(seed)
    keep = (
        tr
        if len(tr) <= REFERENCE_TRAIN_ROWS
        else np.sort(rng.choice(tr, REFERENCE_TRAIN_ROWS, replace=False))
    )
    idx = np.concatenate([keep, va])
    val = np.concatenate([np.zeros(len(keep), bool), np.ones(len(va), bool)])
    return ReferenceRows(np.asarray(X[idx], np.float32), np.asarray(y[idx], np.float32), val)


def scenario_bundle(
    scenario: str, root: str | Path = "runs/bundles", seed: int = 42, sc: Scenario | None = None
) -> Path:
    """``ROOT/SCENARIO``: a bundle trained on the scenario's training rows (a few seconds),
    reused while it loads, has FIDI's quantiles and reference rows, and reads the scenario's
    inputs as this version encodes them. The demo and the benchmark use it. ``sc``: the
    scenario already built (a drawn one's training rows depend on its stream's length, so its
    bundle is kept per length)."""
    sc = sc if sc is not None else build(scenario, seed=seed)
    name = scenario.replace(":", "-")
    if scenario.startswith(FAMILY_PREFIX):
        name += f"-{len(sc.stream)}"
    path = Path(root) / name
    try:
        loaded = Bundle.load(path)
        same = tuple(loaded.features) == tuple(sc.features) and loaded.schema == sc.schema
        if same and loaded.reference_quantiles is not None and loaded.reference_rows is not None:
            return path
    except SelfhealError:
        pass
    build_bundle(
        sc.train.X,
        sc.train.y,
        sc.features,
        sc.rules_toml,
        label="Class",
        source=f"scenario:{scenario}",
        schema=sc.schema,
    ).save(path)
    return path
