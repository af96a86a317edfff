"""The input schema: how a transaction's raw fields become the model's numeric inputs.

A bundle trained on a table with only complete numeric columns has no schema: a
transaction's features are the model's inputs, as they always were. A table with a text
column, a column named categorical, or an empty cell gets one, and it is part of the
frozen base (and of the bundle id):

* a **number** field is one input, its missing values replaced by the training median,
  plus an input ``name:missing`` (1 where the value is missing);
* a **category** field is one input ``name=value`` per frequent training category
  (0/1), one ``name=<other>`` for the rest (rare in training, or never seen), plus
  ``name:missing``, plus ``name=<unseen>``: 1 where the value was never seen in training
  (``<other>`` is 1 there as well, so the frozen model scores it as any rare value; the
  monitor watches the share, and a heal can learn it apart).

Every input is a number, so the monitor's detector, the rules, the healer and the
adapter work on the encoded row as on any other: the mean of ``country=<other>`` is the
share of rare or unseen countries, the mean of ``distance:missing`` the missing rate.

>>> s = Schema.infer({"amount": [1.0, None, 3.0, 5.0], "country": ["FR", "FR", "DE", None]}, min_count=2)
>>> s.columns
('amount', 'amount:missing', 'country=FR', 'country=<other>', 'country:missing', 'country=<unseen>')
>>> s.encode_records([{"amount": None, "country": "DE"}, {"amount": 4, "country": "US"}]).tolist()
[[3.0, 1.0, 0.0, 1.0, 0.0, 0.0], [4.0, 0.0, 0.0, 1.0, 0.0, 1.0]]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from shared.errors import DataError

ABSURD = 1e12  # larger feature values are rejected as corrupt (here and on the numeric path)
OTHER = "<other>"  # the category column of rare and unseen values
UNSEEN = "<unseen>"  # the category column of values never seen in training
MAX_CATEGORIES = 100  # frequent values of a field with their own input, at most
MAX_RARE = 10_000  # rare training values a field keeps (to tell them from unseen ones)
ENCODINGS = ("onehot", "embedding")  # how a category field's block trains (see CategoryField)
MISSING = ":missing"  # suffix of a field's missing indicator


@dataclass(frozen=True)
class NumberField:
    name: str
    impute: float  # the training median: what a missing value becomes

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.name, self.name + MISSING)


@dataclass(frozen=True)
class CategoryField:
    name: str
    vocabulary: tuple[str, ...]  # the frequent training categories, each its own input
    # the other training values (the MAX_RARE most frequent); None: a bundle from before
    # unseen values had their own input (it has no ``<unseen>`` input)
    rare: tuple[str, ...] | None = None
    # 0: one-hot; d > 0: trained through a d-dimensional embedding, folded into the first
    # layer after training (shared.training.Embeddings): the encoded inputs are the same
    embedding: int = 0

    @cached_property
    def columns(self) -> tuple[str, ...]:
        cols = (*(f"{self.name}={v}" for v in self.vocabulary), f"{self.name}={OTHER}", self.name + MISSING)
        return cols if self.rare is None else (*cols, f"{self.name}={UNSEEN}")

    @cached_property
    def position(self) -> dict[str, int]:
        """Each frequent value's place in the field's inputs."""
        return {v: k for k, v in enumerate(self.vocabulary)}

    @cached_property
    def known(self) -> frozenset[str]:
        """The training values that are not unseen: the vocabulary and the rare ones."""
        return frozenset((*self.vocabulary, *(self.rare or ())))

    @property
    def partition(self) -> tuple[str, ...]:
        """The inputs of which exactly one is 1 in every row (``<unseen>`` overlaps ``<other>``)."""
        return self.columns[: len(self.vocabulary) + 2]


Field = NumberField | CategoryField


@dataclass(frozen=True)
class Schema:
    fields: tuple[Field, ...]

    @cached_property
    def names(self) -> tuple[str, ...]:
        """The raw field names a transaction carries."""
        return tuple(f.name for f in self.fields)

    @cached_property
    def columns(self) -> tuple[str, ...]:
        """The model's inputs, in order."""
        return tuple(c for f in self.fields for c in f.columns)

    @cached_property
    def indicators(self) -> tuple[bool, ...]:
        """Per input: a 0/1 flag (a category or a missing flag), not a number."""
        return tuple(not (isinstance(f, NumberField) and c == f.name) for f in self.fields for c in f.columns)

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)

    def encoded(self, encoding: str) -> Schema:
        """This schema with every category field trained one-hot, or through an embedding of
        ``round(1.6 k^0.56)`` dimensions (fast.ai's rule; at most ``k - 1``), ``k`` its
        frequent values plus ``<other>`` and missing."""
        if encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding {encoding!r}: choose from {', '.join(ENCODINGS)}")
        fields: list[Field] = []
        for f in self.fields:
            if isinstance(f, CategoryField):
                k = len(f.partition)
                dim = max(1, min(k - 1, round(1.6 * k**0.56))) if encoding == "embedding" else 0
                f = CategoryField(f.name, f.vocabulary, f.rare, dim)
            fields.append(f)
        return Schema(tuple(fields))

    def embeddings(self) -> list[tuple[list[int], int]]:
        """(input columns, dim) of each field trained through an embedding."""
        out, j = [], 0
        for f in self.fields:
            if isinstance(f, CategoryField) and f.embedding:
                out.append((list(range(j, j + len(f.partition))), f.embedding))
            j += len(f.columns)
        return out

    # -- building
    @classmethod
    def infer(
        cls,
        columns: Mapping[str, Sequence[object]],
        categorical: Iterable[str] = (),
        max_categories: int = MAX_CATEGORIES,
        min_count: int = 30,
        named: Mapping[str, Iterable[str]] | None = None,
    ) -> Schema:
        """A schema from training columns: text columns (and those in ``categorical``) are
        categories; a category is frequent with ``min_count`` rows, at most ``max_categories``
        of them per field. ``named`` (field -> values, the rules' strings) makes those fields
        categories and gives each value its own input, however rare (the frozen model gives
        an input it never saw set no weight; rules, the monitor and healing can use it)."""
        named = named or {}
        forced = set(categorical) | set(named)
        fields: list[Field] = []
        for name, values in columns.items():
            present = [v for v in values if not is_missing(v)]
            if name in forced or any(isinstance(v, str) and not _is_number(v) for v in present):
                counts = Counter(str(v).strip() for v in present)
                frequent = {c for c, k in counts.most_common(max_categories) if k >= min_count}
                vocabulary = tuple(sorted(frequent | set(named.get(name, ()))))
                rare = [c for c, _ in counts.most_common() if c not in vocabulary][:MAX_RARE]
                fields.append(CategoryField(name, vocabulary, tuple(sorted(rare))))
            else:
                nums = np.asarray([float(v) for v in present], dtype=np.float64)  # type: ignore[arg-type]
                if len(nums) == 0:
                    raise DataError(f"column {name!r} has no value at all")
                if not np.isfinite(nums).all():
                    raise DataError(f"column {name!r} has a NaN or infinite value")
                fields.append(NumberField(name, float(np.median(nums))))
        return cls(tuple(fields))

    # -- encoding
    def encode_columns(self, columns: Mapping[str, Sequence[object]]) -> np.ndarray:
        """(n, len(columns)) float32 from a table's raw columns."""
        n = len(next(iter(columns.values()))) if columns else 0
        return self.encode_records([{k: columns[k][i] for k in self.names} for i in range(n)])

    def encode_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """(n, len(columns)) float32 from records already checked (:meth:`problem` is None)."""
        out = np.zeros((len(records), len(self.columns)), dtype=np.float32)
        j = 0
        for f in self.fields:
            if isinstance(f, NumberField):
                for i, r in enumerate(records):
                    v = r[f.name]
                    if is_missing(v):
                        out[i, j], out[i, j + 1] = f.impute, 1.0
                    else:
                        out[i, j] = float(v)
                j += 2
            else:
                at, known = f.position, f.known
                other, miss = len(f.vocabulary), len(f.vocabulary) + 1
                for i, r in enumerate(records):
                    v = r[f.name]
                    if is_missing(v):
                        out[i, j + miss] = 1.0
                        continue
                    text = str(v).strip()
                    k = at.get(text, other)
                    out[i, j + k] = 1.0
                    if k == other and f.rare is not None and text not in known:
                        out[i, j + miss + 1] = 1.0
                j += len(f.columns)
        return out

    def problem(self, features: Mapping[str, Any]) -> tuple[str, str] | None:
        """Why a transaction's ``features`` cannot be encoded: ("schema" or "value", text)."""
        missing = [n for n in self.names if n not in features]
        if missing:
            return "schema", f"missing feature(s): {', '.join(missing[:5])}"
        if len(features) != len(self.fields):
            extra = sorted(set(features) - set(self.names))
            return "schema", f"unknown feature(s): {', '.join(map(str, extra[:5]))}"
        for f in self.fields:
            v = features[f.name]
            if v is None:
                continue
            if isinstance(f, CategoryField):
                if not isinstance(v, str):
                    return "value", f"feature {f.name!r} is a category: expected a string or null"
            elif isinstance(v, bool) or not isinstance(v, int | float):
                return "value", f"feature {f.name!r} is not a number or null"
            elif not np.isfinite(v) or abs(v) > ABSURD:
                return "value", f"feature {f.name!r} is not finite or absurd: {v!r}"
        return None

    # -- the manifest
    def to_dict(self) -> dict[str, Any]:
        return {
            "fields": [
                {"name": f.name, "kind": "number", "impute": f.impute}
                if isinstance(f, NumberField)
                else {"name": f.name, "kind": "category", "vocabulary": list(f.vocabulary)}
                | ({} if f.rare is None else {"rare": list(f.rare)})
                | ({"embedding": f.embedding} if f.embedding else {})
                for f in self.fields
            ]
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Schema:
        fields: list[Field] = []
        for f in d["fields"]:
            if f["kind"] == "number":
                fields.append(NumberField(str(f["name"]), float(f["impute"])))
            elif f["kind"] == "category":
                rare = None if "rare" not in f else tuple(map(str, f["rare"]))
                vocabulary = tuple(map(str, f["vocabulary"]))
                fields.append(CategoryField(str(f["name"]), vocabulary, rare, int(f.get("embedding", 0))))
            else:
                raise ValueError(f"unknown field kind {f['kind']!r}")
        return cls(tuple(fields))

    def describe(self) -> list[str]:
        """One line per field, for ``selfheal train`` and ``bundle info``."""
        lines = []
        for f in self.fields:
            if isinstance(f, NumberField):
                lines.append(f"{f.name}: number, missing -> {f.impute:g} (+ {f.name}{MISSING})")
            else:
                vocab = ", ".join(f.vocabulary[:8]) + (" ..." if len(f.vocabulary) > 8 else "")
                unseen = "" if f.rare is None else f" + {UNSEEN}"
                unseen += f" ({len(f.rare)} rare training values in {OTHER} only)" if f.rare else ""
                how = f"embedded in {f.embedding} dims" if f.embedding else "one-hot"
                head = f"{f.name}: category, {len(f.vocabulary)} {how} ({vocab})"
                lines.append(f"{head} + {OTHER} + {f.name}{MISSING}{unseen}")
        return lines


_MISSING_TEXT = {"", "nan", "null"}  # after strip, lower case: what table writers put for "no value"


def is_missing(v: object) -> bool:
    """An empty cell: None, NaN, or blank text (or "nan", "null")."""
    if v is None:
        return True
    if isinstance(v, float):
        return v != v
    return isinstance(v, str) and v.strip().lower() in _MISSING_TEXT


def _is_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def needs_schema(columns: Mapping[str, Sequence[object]], categorical: Iterable[str] = ()) -> bool:
    """Whether a table needs a schema: a column named categorical, a text value or an empty cell."""
    if any(c in columns for c in categorical):
        return True
    return any(
        is_missing(v) or (isinstance(v, str) and not _is_number(v)) for c in columns.values() for v in c
    )
