"""The transaction batch decoder's fast path against the record-by-record reference, on random input."""

from __future__ import annotations

import math

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.messages import Label, Reject, RejectCode, Transaction, decode_label, encode_transaction
from shared.messages.transactions import (
    MAX_RECORD_BYTES,
    NO_CHECKS,
    Checks,
    RecentIds,
    decode_transactions,
    decode_transactions_checked,
)

FEATURES = ["V1", "V2", "V3"]

numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
odd_values = st.one_of(
    numbers, st.booleans(), st.none(), st.text(max_size=3), st.lists(st.integers(-9, 9), max_size=2)
)


@st.composite
def near_valid(draw: st.DrawFn) -> bytes:
    """A transaction, perhaps with a feature missing, extra, mistyped or absurd, or a bad id."""
    feats: dict[str, object] = {f: draw(numbers) for f in FEATURES}
    kind = draw(st.integers(0, 7))
    if kind == 1:
        feats.pop(draw(st.sampled_from(FEATURES)))
    elif kind == 2:
        feats[draw(st.sampled_from(["V4", "v1", ""]))] = 0.0
    elif kind == 3:
        feats[draw(st.sampled_from(FEATURES))] = draw(odd_values)
    rec: dict[str, object] = {"id": draw(st.sampled_from(["a", "b", "c", "d"])), "features": feats}
    if kind == 4:
        rec["id"] = draw(st.one_of(st.integers(-9, 9), st.none(), st.just("")))
    if kind == 5:
        rec["ts"] = draw(odd_values)
    elif draw(st.booleans()):
        rec["ts"] = draw(numbers)
    if kind == 7:
        rec["bundle"] = draw(st.one_of(st.sampled_from(["ours", "theirs", ""]), st.integers(0, 3)))
    if kind == 6:
        return orjson.dumps(
            draw(st.one_of(st.lists(st.integers(-9, 9), max_size=2), st.just(rec["features"])))
        )
    return orjson.dumps(rec)


def same(a: object, b: object) -> bool:
    return bool(a == b) or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def assert_same_result(values: list[bytes | None], checks: Checks = NO_CHECKS) -> None:
    fast = decode_transactions(values, FEATURES, checks)
    ref = decode_transactions_checked(values, FEATURES, checks)
    assert fast.ids == ref.ids
    assert fast.index == ref.index
    assert fast.rejected == ref.rejected
    assert all(same(a, b) for a, b in zip(fast.ts, ref.ts, strict=True))
    np.testing.assert_array_equal(fast.X, ref.X)
    assert fast.X.dtype == np.float32 and fast.X.shape == (len(fast.ids), len(FEATURES))
    # every input ends up as exactly one row or one reason
    assert sorted(fast.index + [i for i, _ in fast.rejected]) == list(range(len(values)))


@settings(max_examples=300, deadline=None)
@given(st.lists(near_valid(), max_size=12))
def test_fast_path_equals_reference_on_near_valid_records(values: list[bytes]) -> None:
    assert_same_result(list(values))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=40), st.none(), near_valid()), max_size=8))
def test_random_bytes_never_raise_and_are_all_accounted_for(values: list[bytes | None]) -> None:
    assert_same_result(values)


keys = st.one_of(st.none(), st.binary(max_size=4), st.sampled_from([b"\xff\xfe", "é".encode(), b"a"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(near_valid(), keys), max_size=10), st.sets(st.sampled_from("abcd"), max_size=2))
def test_keys_bundles_and_recent_ids_are_checked_the_same_on_both_paths(
    records: list[tuple[bytes, bytes | None]], recent: set[str]
) -> None:
    checks = Checks([k for _, k in records], "ours", recent)
    assert_same_result([v for v, _ in records], checks)
    d = decode_transactions([v for v, _ in records], FEATURES, checks)
    assert not set(d.ids) & recent  # a recently decided id is never scored again
    for i, _ in d.rejected:
        assert d.index.count(i) == 0


def test_the_checks_name_their_reasons() -> None:
    good = encode_transaction(Transaction.from_row("g", FEATURES, [1.0, 2.0, 3.0], None))
    other = orjson.dumps({"id": "o", "bundle": "theirs", "features": dict.fromkeys(FEATURES, 0)})
    huge = orjson.dumps({"id": "h", "features": dict.fromkeys(FEATURES, 0), "pad": "x" * MAX_RECORD_BYTES})
    seen = encode_transaction(Transaction.from_row("s", FEATURES, [1.0, 2.0, 3.0], None))
    values = [good, other, huge, good.replace(b'"g"', b'"k"'), seen]
    keys = [b"g", b"o", b"h", b"\xff\xfe", b"s"]
    d = decode_transactions(values, FEATURES, Checks(keys, "ours", RecentIds(10).add(["s"])))
    assert d.ids == ["g"]
    reasons = dict(d.rejected)
    assert reasons[1].code == RejectCode.BUNDLE and reasons[1].text.startswith("unknown bundle 'theirs'")
    assert reasons[2].code == RejectCode.SIZE and reasons[2].text.startswith("record too large")
    assert reasons[3] == Reject(RejectCode.KEY, "key is not UTF-8")
    assert reasons[4] == Reject(RejectCode.DUPLICATE, "duplicate id: already decided")


def test_recent_ids_remember_at_least_the_last_capacity_and_forget_older_ones() -> None:
    recent = RecentIds(3)
    for k in range(10):
        recent.add([f"{k}a", f"{k}b"])
        last3 = [f"{k}b", f"{k}a", f"{k - 1}b"][: min(3, 2 * (k + 1))]
        assert all(x in recent for x in last3) and 3 <= len(recent) + (k == 0) <= 6
        assert not recent.isdisjoint(last3) and recent.isdisjoint(["never"])
    assert "0a" not in recent and "1b" not in recent
    assert "a" not in RecentIds(0).add(["a"])


def test_a_good_batch_is_decoded_by_the_typed_path_like_the_reference() -> None:
    from shared.messages.transactions import _decode_typed

    values: list[bytes | None] = [
        encode_transaction(Transaction.from_row(f"t{i}", FEATURES, [0.1 * i, -2.5, 7], ts))
        for i, ts in enumerate([None, 5, 1.5e12])
    ]
    typed = _decode_typed(values, FEATURES, Checks([b"t0", b"t1", b"t2"], "ours", RecentIds(5)))
    assert typed is not None and typed.ids == ["t0", "t1", "t2"] and typed.ts == [None, 5, 1.5e12]
    assert_same_result(values, Checks([b"t0", b"t1", b"t2"], "ours", RecentIds(5)))
    assert _decode_typed([*values, values[0]], FEATURES, NO_CHECKS) is None  # a duplicate id
    # a key given twice: the last one counts, on every path (as orjson reads it)
    twice: list[bytes | None] = [
        b'{"id":"a","id":"b","features":{"V1":1,"V2":2,"V3":3}}',
        b'{"id":"c","features":{"V1":1,"V1":5,"V2":2,"V3":3}}',
    ]
    assert_same_result(twice)
    assert decode_transactions(twice, FEATURES).ids == ["b", "c"]


label_records = st.one_of(
    st.binary(max_size=30),
    st.none(),
    st.builds(
        lambda i, y: orjson.dumps({"id": i, "label": y}),
        st.one_of(st.text(max_size=3), st.integers(-2, 2), st.none()),
        st.one_of(st.integers(-1, 2), st.floats(), st.booleans(), st.text(max_size=2), st.none()),
    ),
)


@settings(max_examples=300, deadline=None)
@given(label_records)
def test_a_label_is_an_id_and_a_zero_or_one_or_a_reason(raw: bytes | None) -> None:
    parsed = decode_label(raw)
    if isinstance(parsed, Reject):
        assert parsed.text and parsed.code in (
            RejectCode.EMPTY,
            RejectCode.JSON,
            RejectCode.SCHEMA,
            RejectCode.VALUE,
            RejectCode.SIZE,
        )
    else:
        assert (
            isinstance(parsed, Label) and parsed.id and parsed.label in (0, 1) and type(parsed.label) is int
        )


def test_good_batch_takes_the_fast_path_values() -> None:
    rows = [[0.5, -1.0, 3], [1e-3, 2.5, -7]]
    values: list[bytes | None] = [
        encode_transaction(Transaction.from_row(f"t{i}", FEATURES, r, 1000.0 + i)) for i, r in enumerate(rows)
    ]
    d = decode_transactions(values, FEATURES)
    assert d.ids == ["t0", "t1"] and d.rejected == [] and d.ts == [1000.0, 1001.0]
    np.testing.assert_array_equal(d.X, np.array(rows, dtype=np.float32))


def test_one_bad_value_rejects_only_its_record_with_the_reference_reason() -> None:
    good = encode_transaction(Transaction.from_row("g", FEATURES, [1.0, 2.0, 3.0], None))
    absurd = orjson.dumps({"id": "x", "features": {"V1": 1e13, "V2": 0, "V3": 0}})
    boolean = orjson.dumps({"id": "y", "features": {"V1": True, "V2": 0, "V3": 0}})
    d = decode_transactions([good, absurd, boolean, good], FEATURES)
    assert d.ids == ["g"]
    assert [i for i, _ in d.rejected] == [1, 2, 3]
    assert "absurd" in d.rejected[0][1].text and "not a number" in d.rejected[1][1].text
    assert d.rejected[2][1] == Reject(RejectCode.DUPLICATE, "duplicate id in batch")


def test_one_feature_bundle() -> None:
    d = decode_transactions([orjson.dumps({"id": "a", "features": {"V1": 2}})], ["V1"])
    assert d.ids == ["a"] and d.X.tolist() == [[2.0]]
