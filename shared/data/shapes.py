"""What every data source hands the rest: a labelled :class:`Dataset`, a :class:`Stream` in
arrival order with its drift point, and the :class:`Scenario` that holds both with its rules
(the library's scenarios, the drawn family and a user's own tables all build these)."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared.data.payments import write_csv
from shared.schema import Schema


@dataclass(frozen=True)
class Dataset:
    X: np.ndarray  # (n, d) float32
    y: np.ndarray  # (n,) float32, 1 = fraud


@dataclass(frozen=True)
class Stream:
    ids: np.ndarray  # (n,) str: transaction ids, unique
    X: np.ndarray  # (n, d) float32
    y: np.ndarray  # (n,) float32
    drift_at: int | None  # index of the first drifted transaction; None: no drift
    posterior: np.ndarray  # (n,) Bayes p(fraud | x) under the generator at that time
    raw: tuple[Mapping[str, Any], ...] | None = None  # a schema scenario: each row's raw fields, as sent

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    features: tuple[str, ...]
    rules_toml: str
    train: Dataset
    clean_test: Dataset
    stream: Stream
    drift_test: Dataset | None = None  # seed only: the 1,000 drifted rows
    seed_batches: tuple[np.ndarray, ...] = field(default=())  # seed only: 25 x 100 row indices
    schema: Schema | None = None  # raw fields -> ``features`` (X holds the encoded inputs)
    raw_tables: dict[str, dict[str, list[object]]] | None = None  # train/test/stream as raw columns

    def write_csv(self, out_dir: str | Path) -> Path:
        """Write train.csv, test.csv, stream.csv, rules.toml and scenario.json to ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if self.raw_tables is not None:
            for name, cols in self.raw_tables.items():
                write_csv(str(out / f"{name}.csv"), cols)
            return self._write_meta(out)
        n_tr, n_te = len(self.train.y), len(self.clean_test.y)
        _write_table(out / "train.csv", [f"train-{i}" for i in range(n_tr)], self.train, self.features)
        _write_table(out / "test.csv", [f"test-{i}" for i in range(n_te)], self.clean_test, self.features)
        stream_ds = Dataset(self.stream.X, self.stream.y)
        _write_table(out / "stream.csv", list(self.stream.ids), stream_ds, self.features)
        return self._write_meta(out)

    def _write_meta(self, out: Path) -> Path:
        (out / "rules.toml").write_text(self.rules_toml)
        meta = {
            "name": self.name,
            "description": self.description,
            "features": list(self.features if self.schema is None else self.schema.names),
            "label": LABEL,
            "drift_at": self.stream.drift_at,
            "stream_rows": len(self.stream),
        }
        (out / "scenario.json").write_text(json.dumps(meta, indent=2) + "\n")
        return out


LABEL = "Class"


def _write_table(path: Path, ids: list[str], ds: Dataset, features: tuple[str, ...]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", *features, LABEL])
        for i, row, label in zip(ids, ds.X.tolist(), ds.y.tolist(), strict=True):
            w.writerow([i, *(f"{v:.6g}" for v in row), int(label)])
