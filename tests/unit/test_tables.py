from __future__ import annotations

import pytest

from shared.data.tables import load_table
from shared.errors import DataError
from shared.schema import Schema


def write(tmp_path, text, name="t.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_reads_features_and_labels_skipping_ids(tmp_path):
    p = write(tmp_path, "id,a,b,Class\nx1,1.5,2,0\nx2,-1,3e2,1\n")
    t = load_table(p, "Class")
    assert t.features == ("a", "b")
    assert t.X.tolist() == [[1.5, 2.0], [-1.0, 300.0]]
    assert t.y.tolist() == [0.0, 1.0]


def test_feature_subset_in_given_order(tmp_path):
    p = write(tmp_path, "a,b,c,y\n1,2,3,0\n4,5,6,1\n")
    assert load_table(p, "y", ["c", "a"]).X.tolist() == [[3.0, 1.0], [6.0, 4.0]]


@pytest.mark.parametrize(
    "text, label, features, message, categorical",
    [
        ("a,b\n1,0\n2,1\n", "Class", None, "no label column 'Class'; columns are a, b", ()),
        ("a,Class\n1,0\ninf,1\n", "Class", None, "column 'a' has NaN or infinite value 'inf' at line 3", ()),
        ("a,Class\n,0\nnull,1\n", "Class", None, "column 'a' has no value at all", ()),
        ("a,Class\n1,0\n2,1\n", "Class", None, "--categorical names no feature column: b", ["b"]),
        ("a,Class\n1,0\n2,2\n", "Class", None, "must be 0 or 1; line 3 has '2'", ()),
        ("a,Class\n1,1\n2,1\n", "Class", None, "only class 1", ()),
        ("a,Class\n", "Class", None, "no rows", ()),
        ("", "Class", None, "the file is empty", ()),
        ("a,Class\n1,0,5\n", "Class", None, "line 2 has 3 fields, the header has 2", ()),
        ("a,a,Class\n1,1,0\n", "Class", None, "duplicate column name", ()),
        ("a,Class\n1,0\n2,1\n", "Class", ["zz"], "feature column(s) not found: zz", ()),
        ("a,Class\n1,0\n2,1\n", "Class", ["Class"], "cannot also be a feature", ()),
        ("id,Class\nx,0\ny,1\n", "Class", None, "no feature columns", ()),
    ],
)
def test_bad_tables_get_a_clear_error(tmp_path, text, label, features, message, categorical):
    with pytest.raises(DataError) as info:
        load_table(write(tmp_path, text), label, features, categorical)
    assert message in str(info.value)
    assert "t.csv" in str(info.value)


def test_missing_file_and_unknown_type(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_table(tmp_path / "none.csv", "y")
    with pytest.raises(DataError, match=r"use \.csv or \.parquet"):
        load_table(write(tmp_path, "x", name="t.xlsx"), "y")


def test_non_utf8_csv(tmp_path):
    p = tmp_path / "t.csv"
    p.write_bytes(b"a,Class\n\xff\xfe,0\n")
    with pytest.raises(DataError, match="not UTF-8"):
        load_table(p, "Class")


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": [1.0, 2.0], "s": ["x", "y"], "Class": [0, 1]}), path)
    assert load_table(path, "Class", ["a"]).X.tolist() == [[1.0], [2.0]]
    t = load_table(path, "Class")  # a text column: a category (too rare here for its own input)
    assert t.features == ("a", "a:missing", "s=<other>", "s:missing", "s=<unseen>")
    pq.write_table(pa.table({"a": [1.0, None], "Class": [0, 1]}), path)
    assert load_table(path, "Class").X.tolist() == [[1.0, 0.0], [1.0, 1.0]]
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 nope")
    with pytest.raises(DataError, match="cannot read Parquet"):
        load_table(tmp_path / "bad.parquet", "Class")


def test_categories_and_missing_values_get_a_schema(tmp_path):
    rows = ["country,amount,mcc,Class"]
    for i in range(200):
        rows.append(f"{'FR' if i % 3 else 'DE'},{'' if i % 10 == 0 else i},{5411 if i % 2 else 7995},{i % 2}")
    rows.append("XX,1,5411,0")  # a country seen once: the <other> bucket
    t = load_table(write(tmp_path, "\n".join(rows) + "\n"), "Class", categorical=["mcc"])
    assert t.schema is not None and t.schema.names == ("country", "amount", "mcc")
    assert t.features == (
        "country=DE", "country=FR", "country=<other>", "country:missing", "country=<unseen>",
        "amount", "amount:missing",
        "mcc=5411", "mcc=7995", "mcc=<other>", "mcc:missing", "mcc=<unseen>",
    )  # fmt: skip
    assert t.X[0].tolist() == [1, 0, 0, 0, 0, 99, 1, 0, 1, 0, 0, 0]  # DE, amount missing (the median), 7995
    assert t.X[-1].tolist() == [0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 0, 0]  # XX: rare in training, not unseen
    assert (t.X[:, 6] == 1).sum() == 20
    unseen = t.schema.encode_records([{"country": "US", "amount": 3, "mcc": None}])
    assert unseen.tolist() == [[0, 0, 1, 0, 1, 3, 0, 0, 0, 0, 1, 0]]  # <other> and <unseen>; mcc missing
    old = t.schema.to_dict()  # a bundle from before <unseen>: no rare values recorded
    for f in old["fields"]:
        f.pop("rare", None)
    before = Schema.from_dict(old)
    assert "country=<unseen>" not in before.columns and len(before.columns) == len(t.features) - 2
    assert before.encode_records([{"country": "US", "amount": 3, "mcc": None}]).tolist() == [
        [0, 0, 1, 0, 3, 0, 0, 0, 0, 1]
    ]


def test_a_complete_numeric_table_has_no_schema(tmp_path):
    assert load_table(write(tmp_path, "a,Class\n1,0\n2,1\n"), "Class").schema is None
