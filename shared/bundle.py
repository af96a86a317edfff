"""Model bundles: everything a service needs to score, in one directory, with a content id.

    BUNDLE/
      bundle.json          manifest: format, id, model config, ordered features, reference
                           statistics (mean, std, quantiles for FIDI), threshold, costs,
                           label column, training report; the input schema when the
                           training table had categories or missing values
                           (:mod:`shared.schema`; ``features`` are then its encoded inputs)
      base.safetensors     backbone + head + input standardisation (frozen forever)
      adapter.safetensors  the adapter as trained: version 0, what "no heal" means
      rules.toml           domain rules (may hold no rule)
      reference.safetensors  labelled reference rows: a sample of the training rows and the
                           validation rows (X, y, validation), what label-free healing
                           compares the stream with; optional (bundles from before it
                           cannot heal without labels)

The id is the SHA-256 (first 16 hex digits) of the manifest's content fields and the
three other files, so two services run the same model exactly when their ids match.
Loading checks the id; nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from shared.drift import FIDI
from shared.drift.categories import CategoryGroup, CategoryShift
from shared.errors import BundleError, SelfhealError
from shared.evaluation import CostMatrix
from shared.model import (
    CALIBRATION_KEYS,
    AdapterState,
    ModelConfig,
    SelfHealingModel,
    adapter_from_bytes,
    adapter_to_bytes,
)
from shared.rules import RuleSet
from shared.schema import OTHER, CategoryField, Schema

FORMAT = 1
FILES = ("bundle.json", "base.safetensors", "adapter.safetensors", "rules.toml")
REFERENCE_FILE = "reference.safetensors"


@dataclass(frozen=True)
class ReferenceRows:
    """Labelled rows from before any drift: training rows (a sample) and validation rows."""

    X: np.ndarray  # (n, d) float32
    y: np.ndarray  # (n,) float32, 1 = fraud
    validation: np.ndarray  # (n,) bool: held out of training (calibration, confusion rates)

    def to_bytes(self) -> bytes:
        tensors = {
            "X": torch.as_tensor(np.ascontiguousarray(self.X, dtype=np.float32)),
            "y": torch.as_tensor(np.ascontiguousarray(self.y, dtype=np.float32)),
            "validation": torch.as_tensor(np.ascontiguousarray(self.validation, dtype=np.uint8)),
        }
        return st_save(tensors)

    @classmethod
    def from_bytes(cls, data: bytes, n_features: int) -> ReferenceRows:
        t = st_load(data)
        X, y, val = t["X"].numpy(), t["y"].numpy(), t["validation"].numpy().astype(bool)
        if X.ndim != 2 or X.shape[1] != n_features or not (len(X) == len(y) == len(val)):
            raise BundleError(f"reference rows of shape {tuple(X.shape)} do not fit {n_features} features")
        return cls(X, y, val)


@dataclass
class Bundle:
    config: ModelConfig
    features: tuple[str, ...]
    reference_mean: np.ndarray  # (d,) training mean per feature
    reference_std: np.ndarray  # (d,) training standard deviation per feature
    base_state: dict[str, torch.Tensor]
    adapter_state: AdapterState  # version 0
    rules_toml: str
    threshold: float
    costs: CostMatrix
    label: str = "label"
    reference_quantiles: np.ndarray | None = None  # (d, k) training quantiles, for FIDI's normal scores
    reference_rows: ReferenceRows | None = None  # labelled rows from before drift (label-free healing)
    info: dict[str, Any] = field(default_factory=dict)  # training report; not part of the id
    schema: Schema | None = None  # raw fields -> ``features`` (None: a transaction carries ``features``)
    id: str = ""

    def __post_init__(self) -> None:
        if self.schema is not None and self.schema.columns != self.features:
            raise BundleError("the schema's encoded inputs are not the bundle's features")
        if not self.id:
            self.id = self._content_id()
        self.rules = RuleSet.from_toml(
            self.rules_toml, self.features, origin="bundle rules.toml", schema=self.schema
        )

    @property
    def transaction_format(self) -> tuple[str, ...] | Schema:
        """What decodes a transaction for this bundle: its features, or its schema."""
        return self.features if self.schema is None else self.schema

    @property
    def staleness_std(self) -> np.ndarray:
        """Per input, the training standard deviation late labels are compared in (how far
        they moved, whether to carry them to the present); infinite for a schema's 0/1
        inputs, which are never carried."""
        std: np.ndarray = np.maximum(self.reference_std, 1e-12)
        if self.schema is not None:
            std = np.where(np.asarray(self.schema.indicators, bool), np.inf, std)
        return std

    @property
    def inputs(self) -> tuple[str, ...]:
        """The fields a transaction carries: the schema's raw fields, else the features."""
        return self.features if self.schema is None else self.schema.names

    # -- building
    @classmethod
    def from_model(
        cls,
        model: SelfHealingModel,
        features: list[str] | tuple[str, ...],
        reference: tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray],
        rules_toml: str,
        threshold: float,
        costs: CostMatrix,
        label: str = "label",
        info: dict[str, Any] | None = None,
        reference_rows: ReferenceRows | None = None,
        schema: Schema | None = None,
    ) -> Bundle:
        return cls(
            config=model.config,
            features=tuple(features),
            reference_mean=np.asarray(reference[0], dtype=np.float64),
            reference_std=np.asarray(reference[1], dtype=np.float64),
            base_state=model.base_state(),
            adapter_state=model.adapter_state(),
            rules_toml=rules_toml,
            threshold=float(threshold),
            costs=costs,
            label=label,
            reference_quantiles=None if len(reference) < 3 else np.asarray(reference[2], dtype=np.float64),
            info=dict(info or {}),
            reference_rows=reference_rows,
            schema=schema,
        )

    def new_model(self, adapter: AdapterState | None = None) -> SelfHealingModel:
        """A fresh model: the bundle's frozen base with ``adapter`` (default: version 0)."""
        model = SelfHealingModel(self.config)
        model.load_base(self.base_state)
        model.load_adapter(self.adapter_state if adapter is None else adapter)
        model.freeze_base()
        model.eval()
        return model

    def new_fidi(self, **overrides: Any) -> FIDI:
        """A FIDI detector on this bundle's training reference (normal scores when it has quantiles)."""
        return FIDI(
            self.reference_mean,
            self.reference_std,
            quantiles=self.reference_quantiles,
            features=self.features,
            indicators=None if self.schema is None else self.schema.indicators,
            **overrides,
        )

    def new_category_shift(self, **overrides: Any) -> CategoryShift | None:
        """A chi-square detector on this bundle's category fields (None: it has none)."""
        if self.schema is None:
            return None
        at = {c: j for j, c in enumerate(self.features)}
        groups = [
            CategoryGroup(
                f.name,
                tuple(at[c] for c in f.partition),
                (*f.vocabulary, OTHER, "<missing>"),
                tuple(float(self.reference_mean[at[c]]) for c in f.partition),
            )
            for f in self.schema.fields
            if isinstance(f, CategoryField)
        ]
        return CategoryShift(groups, **overrides) if groups else None

    # -- content
    def _core(self) -> dict[str, Any]:
        core = {
            "format": FORMAT,
            "model": self.config.to_dict(),
            "features": list(self.features),
            "reference": self._reference(),
            "threshold": self.threshold,
            "costs": self.costs.to_dict(),
            "label": self.label,
        }
        if self.schema is not None:  # absent otherwise: older bundles keep their ids
            core["schema"] = self.schema.to_dict()
        return core

    def _reference(self) -> dict[str, Any]:
        ref: dict[str, Any] = {"mean": self.reference_mean.tolist(), "std": self.reference_std.tolist()}
        if self.reference_quantiles is not None:
            ref["quantiles"] = self.reference_quantiles.tolist()
        return ref

    def _blobs(self) -> tuple[bytes, ...]:
        base = st_save({k: v.contiguous() for k, v in sorted(self.base_state.items())})
        adapter = adapter_to_bytes(_without_identity(self.adapter_state), {"version": "0"})
        ref = () if self.reference_rows is None else (self.reference_rows.to_bytes(),)
        return base, adapter, self.rules_toml.encode(), *ref

    def _content_id(self) -> str:
        h = hashlib.sha256(orjson.dumps(self._core(), option=orjson.OPT_SORT_KEYS))
        for blob in self._blobs():
            h.update(hashlib.sha256(blob).digest())
        return h.hexdigest()[:16]

    # -- disk
    def save(self, path: str | Path) -> Path:
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        base, adapter, rules, *ref = self._blobs()
        if ref:
            (out / REFERENCE_FILE).write_bytes(ref[0])
        manifest = {"id": self.id, **self._core(), "info": self.info}
        manifest["info"].setdefault("created", datetime.now(UTC).isoformat(timespec="seconds"))
        (out / "base.safetensors").write_bytes(base)
        (out / "adapter.safetensors").write_bytes(adapter)
        (out / "rules.toml").write_bytes(rules)
        (out / "bundle.json").write_text(json.dumps(manifest, indent=2) + "\n")
        return out

    @classmethod
    def load(cls, path: str | Path) -> Bundle:
        src = Path(path)
        missing = [f for f in FILES if not (src / f).is_file()]
        if missing:
            raise BundleError(f"{src} is not a bundle: missing {', '.join(missing)}")
        try:
            m = json.loads((src / "bundle.json").read_text())
            if m.get("format") != FORMAT:
                raise BundleError(f"{src}: bundle format {m.get('format')!r}, this version reads {FORMAT}")
            config = ModelConfig.from_dict(m["model"])
            base = st_load((src / "base.safetensors").read_bytes())
            adapter, _ = adapter_from_bytes((src / "adapter.safetensors").read_bytes(), config)
            bundle = cls(
                config=config,
                features=tuple(m["features"]),
                reference_mean=np.asarray(m["reference"]["mean"], dtype=np.float64),
                reference_std=np.asarray(m["reference"]["std"], dtype=np.float64),
                base_state=base,
                adapter_state=adapter,
                rules_toml=(src / "rules.toml").read_text(),
                threshold=float(m["threshold"]),
                costs=CostMatrix(**m["costs"]),
                label=m.get("label", "label"),
                reference_quantiles=(
                    np.asarray(m["reference"]["quantiles"], dtype=np.float64)
                    if "quantiles" in m["reference"]
                    else None
                ),
                info=m.get("info", {}),
                schema=Schema.from_dict(m["schema"]) if "schema" in m else None,
                reference_rows=(
                    ReferenceRows.from_bytes((src / REFERENCE_FILE).read_bytes(), config.n_features)
                    if (src / REFERENCE_FILE).is_file()
                    else None
                ),
            )
        except BundleError:
            raise
        except (KeyError, TypeError, ValueError, SelfhealError) as exc:
            raise BundleError(f"{src}: damaged bundle: {exc}") from exc
        if bundle.id != m.get("id"):
            raise BundleError(
                f"{src}: content does not match its id {m.get('id')!r} (computed {bundle.id}); "
                "the bundle was modified after it was written"
            )
        return bundle


def _without_identity(state: AdapterState) -> AdapterState:
    """The adapter without its calibration where that is the identity, and without a zero
    decision shift: a bundle's adapter is written (and its id computed) as it was before
    adapters carried either."""
    identity = (
        bool((state["input_scale"] == 1).all())
        and bool((state["input_shift"] == 0).all())
        and float(state["logit_offset"]) == 0.0
    )
    unshifted = float(state.get("decision_shift", torch.zeros(()))) == 0.0
    drop = (CALIBRATION_KEYS if identity else ()) + (("decision_shift",) if unshifted else ())
    return {k: v for k, v in state.items() if k not in drop}
