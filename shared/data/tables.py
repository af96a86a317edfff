"""Reading a user's labelled table (CSV or Parquet) into features and labels, with clear errors.

Every problem raises :class:`DataError` naming the file, the column and, for CSV, the
line: a missing label column, a label that is not 0/1, a table with no rows or with one
class only. A table whose features are complete numbers is read as it is; one with a
text column, a column named in ``categorical`` or an empty cell gets a
:class:`~shared.schema.Schema` (categories one-hot, missing values imputed and flagged),
and ``X`` holds the encoded inputs.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.errors import DataError
from shared.schema import MAX_CATEGORIES, NumberField, Schema, is_missing, needs_schema

ID_COLUMNS = ("id", "transaction_id")


@dataclass(frozen=True)
class Table:
    X: np.ndarray  # (n, d) float32
    y: np.ndarray  # (n,) float32
    features: tuple[str, ...]  # the columns of X: the model's inputs
    label: str
    schema: Schema | None = None  # how raw fields became X (None: they are X)


def load_table(
    path: str | Path,
    label: str,
    features: Sequence[str] | None = None,
    categorical: Sequence[str] = (),
    named: Mapping[str, Iterable[str]] | None = None,
    schema: Schema | None = None,
    max_categories: int = MAX_CATEGORIES,
) -> Table:
    """Read ``path`` (.csv or .parquet); features default to every column but the label and ids.
    ``categorical``, ``named`` (the rules' category strings) and ``max_categories`` as in
    :meth:`Schema.infer`;
    with ``schema`` (a stream for a bundle trained on another table) its fields are read and
    encoded as it says."""
    p = Path(path)
    columns, lines = _read(p)
    features = _feature_columns(p, columns, label, list(schema.names) if schema is not None else features)
    categorical = [*categorical, *(f for f in named or {} if f in features)]
    unknown = [c for c in categorical if c not in features]
    if unknown:
        raise DataError(f"{p}: --categorical names no feature column: {', '.join(unknown)}")
    y = _labels(p, label, columns[label], lines)
    raw = {name: columns[name] for name in features}
    if schema is not None:
        _check_numbers(p, schema, raw, lines)
        return Table(schema.encode_columns(raw), y, schema.columns, label, schema)
    if needs_schema(raw, categorical):
        try:
            schema = Schema.infer(raw, categorical, max_categories, named=named)
        except DataError as exc:
            raise DataError(f"{p}: {exc}") from None
        return Table(schema.encode_columns(raw), y, schema.columns, label, schema)
    X = np.column_stack([_numeric(p, name, columns[name], lines) for name in features])
    return Table(X.astype(np.float32), y, tuple(features), label)


def _read(p: Path) -> tuple[dict[str, list[object]], list[int] | None]:
    """The table's columns, and for a CSV each row's line number (for messages)."""
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return _read_csv(p)
    if suffix in (".parquet", ".pq"):
        return _read_parquet(p), None
    raise DataError(f"{p}: unknown table type {suffix!r}; use .csv or .parquet")


def _feature_columns(
    p: Path, columns: Mapping[str, Sequence[object]], label: str, features: Sequence[str] | None
) -> list[str]:
    """The feature columns (every one but the label and ids when none are named), checked
    against the table."""
    if label not in columns:
        raise DataError(f"{p}: no label column {label!r}; columns are {', '.join(columns) or 'none'}")
    if not features:
        features = [c for c in columns if c != label and c.lower() not in ID_COLUMNS]
    absent = [f for f in features if f not in columns]
    if absent:
        raise DataError(f"{p}: feature column(s) not found: {', '.join(absent)}")
    if label in features:
        raise DataError(f"{p}: the label column {label!r} cannot also be a feature")
    if not features:
        raise DataError(f"{p}: no feature columns besides the label")
    if len(columns[label]) == 0:
        raise DataError(f"{p}: the table has no rows")
    return list(features)


def _labels(path: Path, label: str, values: Sequence[object], lines: list[int] | None) -> np.ndarray:
    """The label column as 0/1 float32; DataError for another value or one class only."""
    y = _numeric(path, label, values, lines)
    bad = np.flatnonzero((y != 0) & (y != 1))
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{path}: label {label!r} must be 0 or 1; {_where(lines, i)} has {values[i]!r}")
    if y.min() == y.max():
        raise DataError(f"{path}: label {label!r} has only class {int(y[0])}; training needs both 0 and 1")
    return y.astype(np.float32)


def _check_numbers(
    path: Path, schema: Schema, raw: Mapping[str, Sequence[object]], lines: list[int] | None
) -> None:
    """DataError naming the first value of a number field that is not a number (nor empty)."""
    for f in schema.fields:
        if isinstance(f, NumberField):
            for i, v in enumerate(raw[f.name]):
                if not is_missing(v):
                    _require_number(path, f.name, v, lines, i)


def _require_number(path: Path, name: str, v: object, lines: list[int] | None, i: int) -> None:
    try:
        float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DataError(f"{path}: column {name!r} is not numeric: {v!r} at {_where(lines, i)}") from None


def _where(lines: list[int] | None, i: int) -> str:
    return f"line {lines[i]}" if lines is not None else f"row {i}"


def _numeric(path: Path, name: str, values: Sequence[object], lines: list[int] | None) -> np.ndarray:
    """Column as float64; DataError names the first missing, non-numeric or non-finite cell."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None:
        for i, v in enumerate(values):
            if v is None or (isinstance(v, str) and v.strip() == ""):
                raise DataError(f"{path}: column {name!r} is empty at {_where(lines, i)}") from None
            _require_number(path, name, v, lines, i)
        raise DataError(f"{path}: column {name!r} is not numeric")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        i = int(bad[0])
        if values[i] is None:
            raise DataError(f"{path}: column {name!r} is empty at {_where(lines, i)}")
        raise DataError(
            f"{path}: column {name!r} has NaN or infinite value {values[i]!r} at {_where(lines, i)}"
        )
    return arr


def _read_csv(path: Path) -> tuple[dict[str, list[object]], list[int]]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: the file is empty")
            header = [h.strip() for h in header]
            dupes = sorted({h for h in header if header.count(h) > 1})
            if dupes:
                raise DataError(f"{path}: duplicate column name(s): {', '.join(dupes)}")
            cols: dict[str, list[object]] = {h: [] for h in header}
            lines: list[int] = []
            for line_no, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) != len(header):
                    raise DataError(
                        f"{path}: line {line_no} has {len(row)} fields, the header has {len(header)}"
                    )
                lines.append(line_no)
                for h, v in zip(header, row, strict=True):
                    cols[h].append(v)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text: {exc.reason}") from exc
    return cols, lines


def _read_parquet(path: Path) -> dict[str, list[object]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise DataError("reading Parquet needs pyarrow: pip install 'selfheal[parquet]'") from exc
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise DataError(f"{path}: cannot read Parquet: {exc}") from exc
    return {name: table.column(name).to_pylist() for name in table.column_names}
